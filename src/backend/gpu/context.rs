//! Instance → adapter → device: which GPU we run on, with its own limits.

use std::sync::{Arc, Mutex};

use thiserror::Error;

/// The graphics API to run through (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl ApiChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            ApiChoice::Vulkan => wgpu::Backends::VULKAN,
            ApiChoice::Metal => wgpu::Backends::METAL,
            ApiChoice::Dx12 => wgpu::Backends::DX12,
            ApiChoice::Gl => wgpu::Backends::GL,
        }
    }
}

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found for {wanted}. On Linux without a GPU, install the Vulkan software rasteriser \
         (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`), or train with `--backend cpu`"
    )]
    NoAdapter { wanted: String },
    #[error("WGPU_ADAPTER_NAME={name:?} matches none of the adapters: {available}")]
    NoAdapterNamed { name: String, available: String },
    #[error("could not open a device on {adapter}: {source}")]
    Device {
        adapter: String,
        source: wgpu::RequestDeviceError,
    },
    #[error("GPU error: {0}")]
    Validation(String),
    #[error("the GPU device was lost: {0}")]
    Lost(String),
    #[error(
        "--precision mixed stores activations in f16, but {adapter} does not offer SHADER_F16 (see `gpu-ae \
         info`); train with --precision f32, or on --backend cpu"
    )]
    NoShaderF16 { adapter: String },
    #[error(
        "{what} needs {needed} bytes in one buffer, but {adapter} allows at most {limit} bytes per storage binding"
    )]
    BufferTooLarge {
        what: String,
        needed: u64,
        limit: u64,
        adapter: String,
    },
}

/// An open device and what we know about it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The first device loss or uncaptured GPU error, recorded by wgpu's callbacks (which would otherwise
    /// panic) so that the training loop can stop with a message and leave the last checkpoint alone.
    fault: Arc<Mutex<Option<String>>>,
    /// Whether shaders keep wgpu's bounds checks on buffer accesses: only with `GPU_AE_SHADER_CHECKS=1`
    /// (for debugging a kernel); the tested kernels run without them.
    pub shader_bounds_checks: bool,
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The backends to search: `--backend` if given, else `WGPU_BACKEND`, else all.
fn backends_for(choice: Option<ApiChoice>) -> wgpu::Backends {
    match choice {
        Some(c) => c.backends(),
        None => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
    }
}

/// Every adapter on the machine, best first.
pub fn list_adapters(choice: Option<ApiChoice>) -> Vec<wgpu::Adapter> {
    let mut adapters = quiet_window_system(|| {
        let inst = instance(backends_for(choice));
        pollster::block_on(inst.enumerate_adapters(backends_for(choice)))
    });
    adapters.sort_by_key(|a| preference(&a.get_info()));
    adapters
}

/// Mesa's window-system layer writes `error: XDG_RUNTIME_DIR is invalid or not set in the environment.`
/// to stderr when a Vulkan instance loads lavapipe without a desktop session: harmless for compute, but a
/// user reads "error". Runs `f` with stderr captured and passes on everything else it wrote.
#[cfg(unix)]
fn quiet_window_system<R>(f: impl FnOnce() -> R) -> R {
    use std::io::{Read, Seek, Write};
    let path = std::env::temp_dir().join(format!("gpu-ae-stderr-{}", std::process::id()));
    let Ok(mut file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
    else {
        return f();
    };
    let _ = std::fs::remove_file(&path);
    let _ = std::io::stderr().flush();
    // SAFETY: plain descriptor juggling on this process's own stderr (fd 2) and a file it owns; fd 2 is
    // restored before returning, whatever `f` does short of aborting.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 {
        return f();
    }
    unsafe {
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2);
    }
    let result = f();
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut written = String::new();
    if file.rewind().is_ok() && file.read_to_string(&mut written).is_ok() {
        let kept: String = written
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR is invalid or not set"))
            .map(|l| format!("{l}\n"))
            .collect();
        eprint!("{kept}");
    }
    result
}

#[cfg(not(unix))]
fn quiet_window_system<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether wgpu reports `info` as a software rasteriser (lavapipe/llvmpipe, SwiftShader, WARP).
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// What `--backend auto` runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoChoice {
    /// The adapter at this index of the (best-first) list.
    Gpu(usize),
    /// The CPU backend, and why.
    Cpu { reason: String },
}

/// `--backend auto`: the best hardware adapter (discrete, then integrated, then virtual; `adapters` is
/// sorted best first), else the CPU backend, which is faster than any software rasteriser. A software
/// adapter runs only when asked for: by `--backend vulkan|gl|…`, or by `WGPU_ADAPTER_NAME` (`named`).
pub fn choose_auto(adapters: &[wgpu::AdapterInfo], named: bool) -> AutoChoice {
    if named {
        return AutoChoice::Gpu(0);
    }
    let hardware = adapters.iter().position(|info| {
        matches!(
            info.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
    });
    if let Some(i) = hardware {
        return AutoChoice::Gpu(i);
    }
    let reason = match adapters.iter().find(|info| is_software(info)) {
        Some(soft) => format!(
            "no hardware GPU found; {} is a software rasteriser, slower than the CPU backend; --backend {} \
             uses it anyway",
            soft.name,
            format!("{:?}", soft.backend).to_lowercase()
        ),
        None => "no GPU adapter found".to_string(),
    };
    AutoChoice::Cpu { reason }
}

/// [`choose_auto`] on this machine's adapters (honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`).
pub fn auto_choice() -> AutoChoice {
    let infos: Vec<wgpu::AdapterInfo> = list_adapters(None).iter().map(|a| a.get_info()).collect();
    let named = std::env::var("WGPU_ADAPTER_NAME").is_ok_and(|n| !n.is_empty());
    choose_auto(&infos, named)
}

/// Lower is better: discrete GPUs first, then integrated, virtual, software; Vulkan/Metal/DX12 before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    let driver = if info.driver.is_empty() {
        String::new()
    } else {
        format!(", {} {}", info.driver, info.driver_info)
    };
    format!(
        "{} ({:?}, {:?}{})",
        info.name,
        info.backend,
        info.device_type,
        driver.trim_end()
    )
}

impl GpuContext {
    /// Opens the preferred adapter (or the one `WGPU_ADAPTER_NAME` names) with its own limits.
    pub fn new(choice: Option<ApiChoice>) -> Result<GpuContext, GpuError> {
        let adapters = list_adapters(choice);
        let wanted = match choice {
            Some(c) => format!("--backend {c:?}").to_lowercase(),
            None => "any backend".to_string(),
        };
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(name) if !name.is_empty() => {
                let needle = name.to_lowercase();
                let available = adapters
                    .iter()
                    .map(|a| a.get_info().name)
                    .collect::<Vec<_>>()
                    .join(", ");
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                    .ok_or(GpuError::NoAdapterNamed { name, available })?
            }
            _ => {
                // With no API named, a hardware adapter before a software one (see `choose_auto`).
                let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
                let first = match (choice, choose_auto(&infos, false)) {
                    (None, AutoChoice::Gpu(i)) => i,
                    _ => 0,
                };
                adapters
                    .into_iter()
                    .nth(first)
                    .ok_or(GpuError::NoAdapter { wanted })?
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Timestamps for --profile; f16 arithmetic and storage for --precision mixed.
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let (device, queue) = quiet_window_system(|| {
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("gpu-ae"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            }))
        })
        .map_err(|source| GpuError::Device {
            adapter: describe_adapter(&info),
            source,
        })?;
        let fault: Arc<Mutex<Option<String>>> = Arc::default();
        let record = |fault: &Arc<Mutex<Option<String>>>, what: String| {
            let mut slot = fault.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(what);
        };
        let lost = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            // A loss explains every error after it (failed maps and submissions), which may have been
            // reported first: it replaces them.
            let mut slot = lost.lock().unwrap_or_else(|e| e.into_inner());
            if !slot.as_ref().is_some_and(|f| f.starts_with("device lost")) {
                *slot = Some(format!("device lost ({reason:?}){detail}"));
            }
        });
        let uncaptured = fault.clone();
        device.on_uncaptured_error(Arc::new(move |error| {
            record(&uncaptured, error.to_string());
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            fault,
            shader_bounds_checks: std::env::var("GPU_AE_SHADER_CHECKS").is_ok_and(|v| v == "1"),
        })
    }

    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    /// Bytes of device memory wgpu's allocator holds for this device's buffers, where the backend reports
    /// it (Vulkan, DX12, Metal do).
    pub fn allocated_bytes(&self) -> Option<u64> {
        self.device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes)
    }

    /// What went wrong with the device, if anything has: a loss, or an error no scope captured.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a fault found by the caller (a failed read-back).
    pub fn record_fault(&self, what: String) {
        let mut slot = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(what);
    }

    /// Fails with a clear message when a buffer of `bytes` cannot be bound as storage on this adapter.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(GpuError::BufferTooLarge {
                what: what.into(),
                needed: bytes,
                limit,
                adapter: self.describe(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, device_type: wgpu::DeviceType) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            device_type,
            backend: wgpu::Backend::Vulkan,
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::Other, wgpu::Backend::Vulkan)
        }
    }

    #[test]
    fn auto_takes_hardware_first_and_the_cpu_backend_over_a_software_rasteriser() {
        use wgpu::DeviceType::*;
        let soft = adapter("llvmpipe (LLVM 15.0.6, 256 bits)", Cpu);
        let discrete = adapter("NVIDIA H200", DiscreteGpu);
        let integrated = adapter("Intel Iris Xe", IntegratedGpu);
        // Only a software adapter: the CPU backend, saying why and how to get lavapipe anyway.
        match choose_auto(std::slice::from_ref(&soft), false) {
            AutoChoice::Cpu { reason } => {
                assert!(
                    reason.contains("no hardware GPU") && reason.contains("llvmpipe"),
                    "{reason}"
                );
                assert!(reason.contains("--backend vulkan"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A discrete and a software adapter (best first, as list_adapters sorts them): the discrete one.
        let mut list = vec![soft.clone(), discrete.clone()];
        list.sort_by_key(preference);
        assert_eq!(list[choose_index(&list)].name, "NVIDIA H200");
        // An integrated GPU beats the software rasteriser too.
        let list = vec![integrated.clone(), soft.clone()];
        assert_eq!(list[choose_index(&list)].name, "Intel Iris Xe");
        // No adapter at all.
        assert_eq!(
            choose_auto(&[], false),
            AutoChoice::Cpu {
                reason: "no GPU adapter found".into()
            }
        );
        // WGPU_ADAPTER_NAME names an adapter: it runs, software or not.
        assert_eq!(choose_auto(&[soft], true), AutoChoice::Gpu(0));
    }

    fn choose_index(list: &[wgpu::AdapterInfo]) -> usize {
        match choose_auto(list, false) {
            AutoChoice::Gpu(i) => i,
            other => panic!("{other:?}"),
        }
    }
}
