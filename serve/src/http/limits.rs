//! The service's limits in its OpenAPI description: a client reads the caps it will be held to
//! (`--max-iters`, `--max-probe-pixels`, `--job-time-limit`) where it reads the settings' schema.

use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::{OpenApi, RefOr};

use crate::service::Config;

/// Writes `config`'s limits into `api`: `iters`' maximum, the probe's pixel cap beside
/// `probe_size`, and the time limit in the description.
pub fn describe(api: &mut OpenApi, config: &Config) {
    let limits = &config.limits;
    if let Some(max) = limits.max_iters {
        if let Some(iters) = settings_property(api, "iters") {
            iters.maximum = Some(utoipa::Number::UInt(max));
            append(
                &mut iters.description,
                &format!("At most {max} on this service (max_iters)."),
            );
        }
    }
    if let Some(max) = limits.max_probe_pixels {
        if let Some(size) = settings_property(api, "probe_size") {
            append(
                &mut size.description,
                &format!(
                    "probe_batch x height x width is at most {max} pixels on this service \
                     (max_probe_pixels)."
                ),
            );
        }
    }
    let time_limit = match config.job_time_limit {
        Some(limit) => format!(
            "A job still running {} after it started ends `failed` with code `time_limit`.",
            humantime::format_duration(limit)
        ),
        None => "Jobs have no time limit on this service.".into(),
    };
    append(
        &mut api.info.description,
        &format!(
            "Settings over this service's limits are refused with 422 and code `over_limit`. \
             {time_limit}"
        ),
    );
}

/// A property of the `RunSettings` schema, to describe.
fn settings_property<'a>(api: &'a mut OpenApi, name: &str) -> Option<&'a mut Object> {
    let schemas = &mut api.components.as_mut()?.schemas;
    let RefOr::T(Schema::Object(settings)) = schemas.get_mut("RunSettings")? else {
        return None;
    };
    match settings.properties.get_mut(name)? {
        RefOr::T(Schema::Object(property)) => Some(property),
        _ => None,
    }
}

fn append(description: &mut Option<String>, sentence: &str) {
    *description = Some(match description.take() {
        Some(text) if !text.is_empty() => format!("{text} {sentence}"),
        _ => sentence.to_string(),
    });
}
