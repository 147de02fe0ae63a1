//! Which device a run computes on: parsing a device name, and choosing the best compiled-in
//! device for `auto`.

use std::str::FromStr;

use candle_core::Device;

/// A device as a user names it (`--device`, the service's `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best compiled-in device that works, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

/// A device name that is none of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}': expected auto, cpu, cuda, cuda:N or metal")]
pub struct UnknownDevice(pub String);

impl FromStr for DeviceChoice {
    type Err = UnknownDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            "metal" => Ok(DeviceChoice::Metal),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| UnknownDevice(s.into())),
        }
    }
}

/// An opened device, and the one-line notice to show when `auto` fell back to the CPU.
pub struct OpenedDevice {
    pub device: Device,
    pub notice: Option<String>,
}

/// Why a named device cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--device {name}: {reason}")]
pub struct DeviceError {
    name: String,
    reason: String,
}

impl DeviceChoice {
    /// Opens the device. `auto` tries CUDA, then Metal, when compiled in, and falls back to CPU
    /// with a notice when a compiled-in GPU backend finds no device.
    pub fn open(self) -> Result<OpenedDevice, DeviceError> {
        let opened = |device| OpenedDevice {
            device,
            notice: None,
        };
        let refuse = |name: &str, reason: String| DeviceError {
            name: name.into(),
            reason,
        };
        match self {
            DeviceChoice::Cpu => Ok(opened(Device::Cpu)),
            DeviceChoice::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(refuse(
                        "cuda",
                        "this cs-init was built without the `cuda` feature (cargo build --features cuda)".into(),
                    ));
                }
                Device::new_cuda(n)
                    .map(opened)
                    .map_err(|e| refuse(&format!("cuda:{n}"), summary(&e)))
            }
            DeviceChoice::Metal => {
                if !candle_core::utils::metal_is_available() {
                    return Err(refuse(
                        "metal",
                        "this cs-init was built without the `metal` feature (cargo build --features metal, macOS only)".into(),
                    ));
                }
                Device::new_metal(0)
                    .map(opened)
                    .map_err(|e| refuse("metal", summary(&e)))
            }
            DeviceChoice::Auto => {
                let mut notice = None;
                if candle_core::utils::cuda_is_available() {
                    match Device::new_cuda(0) {
                        Ok(d) => return Ok(opened(d)),
                        Err(e) => {
                            notice = Some(format!(
                                "no usable CUDA device ({}); running on CPU",
                                summary(&e)
                            ))
                        }
                    }
                }
                if candle_core::utils::metal_is_available() {
                    match Device::new_metal(0) {
                        Ok(d) => return Ok(opened(d)),
                        Err(e) => {
                            notice = Some(format!(
                                "no usable Metal device ({}); running on CPU",
                                summary(&e)
                            ))
                        }
                    }
                }
                Ok(OpenedDevice {
                    device: Device::Cpu,
                    notice,
                })
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
pub fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}
