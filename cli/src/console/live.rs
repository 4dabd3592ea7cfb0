//! A running deployment's page, live: a server-sent event stream that reads the
//! deployment once a second and sends the page's changing parts when they change
//! (`event: parts`, JSON of element id to HTML), then `event: end` once it is over
//! (no host still finishing an event, and the rollback it starts, if any, linked).
//! console.js swaps the parts in; a closed tab ends the stream at the next second.

use super::{Body, Console, DeploymentPoll, alarms, pages};
use crate::deploy::Progress;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a live page's deployment is read.
const EVERY: Duration = Duration::from_secs(1);
/// How long an ended deployment's page keeps following it while hosts finish the event
/// they were in and the rollback it starts is linked (a moment after the end).
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Failed reads in a row after which a stream ends (a deployment that does not exist,
/// credentials that expired): the page says why, rather than retrying forever.
const MOST_FAILED_READS: u32 = 10;

/// A body of the events a task sends.
struct Events(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(context)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// One event in the stream's text format: every line of `data` its own `data:` field
/// (a line ends at CR, LF or CRLF there). An event without data is dropped by
/// browsers, so `data` must not be empty.
fn event(name: &str, data: &str) -> Bytes {
    let mut text = format!("event: {name}\n");
    for line in data.split("\r\n").flat_map(|line| line.split(['\r', '\n'])) {
        text.push_str(&format!("data: {line}\n"));
    }
    text.push('\n');
    Bytes::from(text)
}

pub async fn stream(console: &Arc<Console>, id: &str) -> Response<Body> {
    let (sender, receiver) = mpsc::channel(4);
    let console = Arc::clone(console);
    let id = id.to_owned();
    tokio::spawn(async move {
        let mut progress = Progress::default();
        let mut sent: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut watched: Option<Vec<String>> = None;
        let mut over_since: Option<Instant> = None;
        let mut failures = 0;
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let message = match DeploymentPoll::read(&console.gantry, &id, &mut progress).await {
                Ok(poll) => {
                    failures = 0;
                    if watched.is_none() {
                        watched = Some(alarms(&console.gantry, &poll.info).await);
                    }
                    let view = poll.view(watched.as_deref().unwrap_or_default());
                    let changed: BTreeMap<&'static str, String> =
                        pages::live_parts(&view, console.guard.token())
                            .into_iter()
                            .filter(|(part, html)| sent.get(part) != Some(html))
                            .collect();
                    sent.extend(changed.clone());
                    let mut message = Vec::new();
                    if !changed.is_empty() {
                        let parts = serde_json::to_string(&changed).expect("strings serialize");
                        message.extend_from_slice(&event("parts", &parts));
                    }
                    // Settled, or over and given the while to settle.
                    let over = pages::settled(&poll.info)
                        || (poll.info.is_over()
                            && *over_since.get_or_insert_with(Instant::now) + SETTLE_WAIT
                                < Instant::now());
                    if over {
                        message.extend_from_slice(&event("end", "over"));
                        let _ = sender.send(Bytes::from(message)).await;
                        return;
                    }
                    message
                }
                Err(error) => {
                    failures += 1;
                    if failures >= MOST_FAILED_READS {
                        let said = format!("{failures} reads in a row failed; the last: {error:#}");
                        let _ = sender.send(event("end", &said)).await;
                        return;
                    }
                    event("problem", &format!("{error:#}")).to_vec()
                }
            };
            // A comment at least: a tab that was closed fails the send, and ends this.
            let message = if message.is_empty() {
                Bytes::from_static(b": still running\n\n")
            } else {
                Bytes::from(message)
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/event-stream")
        .body(Events(receiver).boxed())
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_an_event_is_a_data_field() {
        assert_eq!(
            event("parts", "{\"a\":\"x\"}\nsecond"),
            Bytes::from("event: parts\ndata: {\"a\":\"x\"}\ndata: second\n\n")
        );
        assert_eq!(
            event("problem", "a\rdata: forged\r\nb"),
            Bytes::from("event: problem\ndata: a\ndata: data: forged\ndata: b\n\n")
        );
        assert_eq!(
            event("end", "over"),
            Bytes::from("event: end\ndata: over\n\n")
        );
    }
}
