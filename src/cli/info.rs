//! `gpu-ae info`: what GPUs this machine offers and the limits our kernels respect.

use super::InfoArgs;
use crate::backend::gpu::context::{describe_adapter, list_adapters};

pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let adapters = list_adapters(args.backend.api());
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found. On Linux without a GPU, install lavapipe (`apt-get install mesa-vulkan-drivers \
             libvulkan1`); training also works with `--backend cpu`"
        );
    }
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let l = adapter.limits();
        let mark = if i == 0 { " (chosen by default)" } else { "" };
        println!("adapter {i}{mark}: {}", describe_adapter(&info));
        println!(
            "  vendor 0x{:04x}, device 0x{:04x}",
            info.vendor, info.device
        );
        println!(
            "  subgroup size          {}..{}",
            info.subgroup_min_size, info.subgroup_max_size
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
        let ts = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        println!("  timestamp queries      {}", if ts { "yes" } else { "no" });
    }
    Ok(())
}
