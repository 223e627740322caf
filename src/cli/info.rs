//! `gpu-ae info`: what GPUs this machine offers and the limits our kernels respect.

use super::{BackendArg, InfoArgs};
use crate::backend::gpu::context::{
    AutoChoice, choose_auto, describe_adapter, is_software, list_adapters,
};

pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    if args.backend == BackendArg::Cpu {
        // The CPU backend needs no adapter; list none.
        println!(
            "--backend cpu: the CPU reference backend, {} threads (set RAYON_NUM_THREADS to change)",
            rayon::current_num_threads()
        );
        return Ok(());
    }
    let adapters = list_adapters(args.backend.api());
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let named = std::env::var("WGPU_ADAPTER_NAME").is_ok_and(|n| !n.is_empty());
    // What the training commands would run on with this --backend.
    let chosen = match args.backend {
        BackendArg::Auto => choose_auto(&infos, named),
        BackendArg::Cpu => AutoChoice::Cpu {
            reason: "--backend cpu".into(),
        },
        _ => AutoChoice::Gpu(0),
    };
    match &chosen {
        AutoChoice::Cpu { reason } => println!(
            "--backend {}: the CPU backend ({reason})",
            backend_name(args.backend)
        ),
        AutoChoice::Gpu(i) if !adapters.is_empty() => {
            println!("--backend {}: adapter {i}", backend_name(args.backend))
        }
        AutoChoice::Gpu(_) => {}
    }
    if adapters.is_empty() {
        anyhow::ensure!(
            args.backend == BackendArg::Auto,
            "no {} adapter found for --backend {}{}; training also works with --backend auto or cpu",
            api_name(args.backend),
            backend_name(args.backend),
            platform_note(args.backend)
        );
        println!(
            "no GPU adapter found (for a software rasteriser on Linux: `apt-get install mesa-vulkan-drivers \
             libvulkan1`)"
        );
        return Ok(());
    }
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let l = adapter.limits();
        let mut marks = Vec::new();
        if chosen == AutoChoice::Gpu(i) {
            marks.push("chosen");
        }
        if is_software(&info) {
            marks.push("software rasteriser, slower than --backend cpu");
        }
        let mark = if marks.is_empty() {
            String::new()
        } else {
            format!(" ({})", marks.join("; "))
        };
        println!("adapter {i}{mark}: {}", describe_adapter(&info));
        println!(
            "  vendor 0x{:04x}, device 0x{:04x}",
            info.vendor, info.device
        );
        println!(
            "  max storage binding    {} MiB",
            l.max_storage_buffer_binding_size >> 20
        );
        println!("  max buffer             {} MiB", l.max_buffer_size >> 20);
        println!(
            "  workgroup storage      {} KiB",
            l.max_compute_workgroup_storage_size >> 10
        );
        println!(
            "  invocations/workgroup  {}",
            l.max_compute_invocations_per_workgroup
        );
        println!(
            "  workgroups/dimension   {}",
            l.max_compute_workgroups_per_dimension
        );
        println!(
            "  storage buffers/stage  {}",
            l.max_storage_buffers_per_shader_stage
        );
        for (name, present, use_) in features(adapter) {
            println!("  {name:<22} {present}{use_}");
        }
        let selftest = match crate::selftest::cache::failed_before(&info) {
            Some(_) => {
                "FAILED last time: its kernels computed wrong numbers (rerun `gpu-ae selftest`)"
            }
            None => "`gpu-ae selftest` checks every kernel on it against the CPU backend",
        };
        println!("  selftest               {selftest}");
    }
    println!(
        "run `gpu-ae selftest` (--quick: seconds) to check that an adapter computes what the CPU backend \
         does before trusting its numbers"
    );
    Ok(())
}

/// The features that decide what the engine can do on `adapter`, each as (name, what the adapter says,
/// what the engine does with it).
fn features(adapter: &wgpu::Adapter) -> Vec<(&'static str, String, &'static str)> {
    let f = adapter.features();
    let info = adapter.get_info();
    let yes_no = |present: bool| if present { "yes" } else { "no" }.to_string();
    let subgroups = if f.contains(wgpu::Features::SUBGROUP) {
        format!(
            "yes, sizes {}..{}",
            info.subgroup_min_size, info.subgroup_max_size
        )
    } else {
        "no".into()
    };
    // What tensor cores (or their like) the adapter offers: each M×N×K shape with its operand and
    // accumulator types. wgpu lists them only where the driver reports VK_KHR_cooperative_matrix.
    let cooperative = if f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        let shapes: Vec<String> = adapter
            .cooperative_matrix_properties()
            .iter()
            .map(|p| {
                format!(
                    "{}x{}x{} {:?}→{:?}",
                    p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                )
            })
            .collect();
        if shapes.is_empty() {
            "yes (no shapes listed)".into()
        } else {
            format!("yes: {}", shapes.join(", "))
        }
    } else {
        "no".into()
    };
    vec![
        (
            "shader f16",
            yes_no(f.contains(wgpu::Features::SHADER_F16)),
            " (WGSL `enable f16`)",
        ),
        (
            "timestamp queries",
            yes_no(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            " (train --profile times each kernel with them)",
        ),
        ("subgroups", subgroups, ""),
        ("cooperative matrices", cooperative, ""),
    ]
}

/// What each API is called, for messages.
fn api_name(b: BackendArg) -> &'static str {
    match b {
        BackendArg::Vulkan => "Vulkan",
        BackendArg::Metal => "Metal",
        BackendArg::Dx12 => "DirectX 12",
        BackendArg::Gl => "OpenGL",
        BackendArg::Auto | BackendArg::Cpu => "GPU",
    }
}

/// Why an API may be absent here, when the platform is the reason.
fn platform_note(b: BackendArg) -> &'static str {
    let macos = cfg!(any(target_os = "macos", target_os = "ios"));
    match b {
        BackendArg::Metal if !macos => " (Metal exists on macOS and iOS only)",
        BackendArg::Dx12 if !cfg!(windows) => " (DirectX 12 exists on Windows only)",
        BackendArg::Vulkan if cfg!(target_os = "linux") => {
            " (a Vulkan driver is missing; for a software one: `apt-get install mesa-vulkan-drivers \
             libvulkan1`)"
        }
        _ => "",
    }
}

fn backend_name(b: BackendArg) -> String {
    use clap::ValueEnum;
    b.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}
