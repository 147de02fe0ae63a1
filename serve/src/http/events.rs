//! `GET /v1/jobs/{id}/events`: Server-Sent Events of a job. A client that connects late gets the
//! current state first, then every finished layer and the current layer's curve so far, then the
//! live events; the stream ends after the terminal state.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::error::ApiError;
use super::jobs::blocking;
use super::AppState;
use crate::live::Event;
use crate::view::ErrorBody;

fn sse(event: &Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event(event.name).data(&event.data))
}

/// A job's events.
///
/// Events: `job` (the job object; first, on every state change, and last), `layer_started`
/// (`position`, `count`, `name`, `shape`, `iterations`), `iteration` (`position`, `iteration`,
/// `loss`; a few per second), `iterations` (the current layer's points so far, for a late
/// client), `layer_finished` (`ordinal`, `position`, and the layer as in the report), each
/// finished layer once: the stored ones first, then the live ones after them. Events are
/// idempotent by `position`/`ordinal`, so a client that reconnects can merge what it sees again.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Path(id) = id?;
    let service = state.service.clone();
    let check = id.clone();
    blocking(&service, move |s| s.job_row(&check)).await?;
    // Subscribed before the snapshot is read, so no event falls between the two.
    let live = service.live.job(&id);
    let events = live.subscribe();
    let snapshot_id = id.clone();
    let (initial, caught_up, terminal) = blocking(&service, move |s| {
        let row = s.job_row(&snapshot_id)?;
        let view = s.view_of(&row);
        let mut initial = vec![Event {
            name: "job",
            data: serde_json::to_string(&view).expect("a job serializes"),
            terminal: false,
        }];
        let layers = s.layer_records(&snapshot_id)?;
        let caught_up = layers.len();
        s.follow(&row, caught_up);
        for layer in layers {
            initial.push(Event {
                name: "layer_finished",
                data: layer,
                terminal: false,
            });
        }
        if let (Some(progress), Some(live)) = (&view.progress, s.live.get(&snapshot_id)) {
            if progress.layer > 0 && progress.layers_done < progress.layer {
                let points: Vec<_> = live.curve();
                initial.push(Event {
                    name: "iterations",
                    data: serde_json::json!({
                        "position": progress.layer,
                        "name": progress.tensor,
                        "iterations": progress.iterations,
                        "points": points,
                    })
                    .to_string(),
                    terminal: false,
                });
            }
        }
        Ok((initial, caught_up, row.state.is_terminal()))
    })
    .await?;
    if terminal {
        // Nothing more will be sent for this job.
        service.live.remove(&id);
    }
    let first = stream::iter(initial.iter().map(sse).collect::<Vec<_>>());
    let rest = if terminal {
        stream::empty().left_stream()
    } else {
        live_events(events, caught_up, state.shutdown.clone(), service, id).right_stream()
    };
    Ok(Sse::new(first.chain(rest)).keep_alive(KeepAlive::default()))
}

/// The live events until the terminal one, or until the server shuts down.
/// The live events after the snapshot; `caught_up` layers were in it (ordinals 1 to
/// `caught_up`, as the store numbers them), and are not sent again.
fn live_events(
    events: broadcast::Receiver<Arc<Event>>,
    caught_up: usize,
    shutdown: watch::Receiver<bool>,
    service: Arc<crate::service::Service>,
    id: String,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(
        (events, shutdown, false),
        move |(mut events, mut shutdown, done)| {
            let service = service.clone();
            let id = id.clone();
            async move {
                if done || *shutdown.borrow() {
                    return None;
                }
                let received = loop {
                    let received = tokio::select! {
                        received = events.recv() => received,
                        _ = shutdown.changed() => return None,
                    };
                    match &received {
                        Ok(event) if in_snapshot(event, caught_up) => continue,
                        _ => break received,
                    }
                };
                match received {
                    Ok(event) => Some((sse(&event), (events, shutdown, event.terminal))),
                    // Fell behind: a fresh snapshot instead of the missed events.
                    Err(RecvError::Lagged(_)) => {
                        let row = tokio::task::spawn_blocking(move || service.job_row(&id))
                            .await
                            .ok()?
                            .ok()?;
                        let event = Event {
                            name: "job",
                            data: serde_json::to_string(&crate::view::JobView::new(&row, None))
                                .expect("a job serializes"),
                            terminal: row.state.is_terminal(),
                        };
                        Some((sse(&event), (events, shutdown, event.terminal)))
                    }
                    Err(RecvError::Closed) => None,
                }
            }
        },
    )
}

/// A `layer_finished` event the client already had from the snapshot: subscribed before the
/// snapshot was read, the stream also receives the layers stored meanwhile.
fn in_snapshot(event: &Event, caught_up: usize) -> bool {
    event.name == "layer_finished"
        && serde_json::from_str::<serde_json::Value>(&event.data)
            .ok()
            .and_then(|record| record["ordinal"].as_u64())
            .is_some_and(|ordinal| ordinal as usize <= caught_up)
}
