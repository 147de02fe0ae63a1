//! `--device`: parsing, and choosing the best compiled-in device for `auto`.

use std::str::FromStr;

use candle_core::Device;

/// A device as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceArg::Auto),
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            "metal" => Ok(DeviceArg::Metal),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceArg::Cuda)
                .ok_or_else(|| format!("'{s}': expected auto, cpu, cuda, cuda:N or metal")),
        }
    }
}

impl DeviceArg {
    /// Opens the device. `auto` tries CUDA, then Metal, when compiled in, and falls back to CPU
    /// with a one-line notice when a compiled-in GPU backend finds no device.
    pub fn open(self, quiet: bool) -> anyhow::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    anyhow::bail!("--device cuda: this cs-init was built without the `cuda` feature (cargo build --features cuda)");
                }
                Device::new_cuda(n)
                    .map_err(|e| anyhow::anyhow!("--device cuda:{n}: {}", summary(&e)))
            }
            DeviceArg::Metal => {
                if !candle_core::utils::metal_is_available() {
                    anyhow::bail!("--device metal: this cs-init was built without the `metal` feature (cargo build --features metal, macOS only)");
                }
                Device::new_metal(0).map_err(|e| anyhow::anyhow!("--device metal: {}", summary(&e)))
            }
            DeviceArg::Auto => {
                if candle_core::utils::cuda_is_available() {
                    match Device::new_cuda(0) {
                        Ok(d) => return Ok(d),
                        Err(e) if !quiet => {
                            eprintln!(
                                "cs-init: no usable CUDA device ({}); running on CPU",
                                summary(&e)
                            )
                        }
                        Err(_) => {}
                    }
                }
                if candle_core::utils::metal_is_available() {
                    match Device::new_metal(0) {
                        Ok(d) => return Ok(d),
                        Err(e) if !quiet => {
                            eprintln!(
                                "cs-init: no usable Metal device ({}); running on CPU",
                                summary(&e)
                            )
                        }
                        Err(_) => {}
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// The first line of a device error: candle appends a backtrace when `RUST_BACKTRACE` is set,
/// and a notice must stay one line.
fn summary(error: &candle_core::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A device's name for reports.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}
