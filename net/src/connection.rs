//! One client connection: frames are read in order, each request is worked on in its own
//! task (so pipelined requests run concurrently, up to a bound), and the answers are
//! written back in request order.

use std::rc::Rc;

use bytes::Bytes;
use futures::future::{Either, select};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::api::{self, Answer};
use crate::broker::Broker;
use crate::frame::{FrameError, read_body, read_length};

/// Serves `stream` until the client leaves, breaks the protocol, or idles too long.
pub async fn serve_connection(broker: Rc<Broker>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |addr| addr.to_string());
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let (queue, answers) = local_channel::new_bounded(broker.config.limits.pipelined_requests_max);
    let reading = std::pin::pin!(read_requests(&broker, &mut reader, queue));
    let writing = std::pin::pin!(write_answers(&broker, &mut writer, answers));
    let why = match select(reading, writing).await {
        // Answers to requests already read still go out.
        Either::Left((ended, writing)) => writing.await.err().unwrap_or(ended),
        Either::Right((ended, _)) => ended.err().unwrap_or(EndReason::Done),
    };
    match why {
        EndReason::Done | EndReason::Frame(FrameError::Closed) => {
            tracing::debug!(%peer, "connection closed");
        }
        EndReason::Frame(error) => tracing::info!(%peer, %error, "closing connection"),
        EndReason::Protocol(reason) => tracing::info!(%peer, %reason, "closing connection"),
        EndReason::Write(error) => tracing::debug!(%peer, %error, "connection lost"),
    }
}

enum EndReason {
    Done,
    Frame(FrameError),
    Protocol(String),
    Write(std::io::Error),
}

/// Reads requests and starts a task for each; ends at the first frame it cannot take.
async fn read_requests(
    broker: &Rc<Broker>,
    reader: &mut (impl futures::AsyncRead + Unpin),
    queue: LocalSender<JoinHandle<Answer>>,
) -> EndReason {
    let limits = &broker.config.limits;
    loop {
        let len = match read_length(reader, limits.idle_timeout, limits.frame_bytes_max).await {
            Ok(len) => len,
            Err(error) => return EndReason::Frame(error),
        };
        let units = u64::try_from(len).unwrap_or(u64::MAX).max(1);
        let Ok(permit) = broker.request_memory.acquire_static_permit(units).await else {
            return EndReason::Protocol("the shard is shutting down".into());
        };
        let body = match read_body(reader, len, limits.frame_timeout).await {
            Ok(body) => body,
            Err(error) => return EndReason::Frame(error),
        };
        broker.metrics.borrow_mut().bytes_in += u64::try_from(len + 4).unwrap_or(u64::MAX);
        let broker = broker.clone();
        let task = glommio::spawn_local(async move {
            let answer = api::handle(&broker, Bytes::from(body)).await;
            drop(permit);
            answer
        })
        .detach();
        if queue.send(task).await.is_err() {
            return EndReason::Done;
        }
    }
}

/// Writes each request's answer in request order.
async fn write_answers(
    broker: &Broker,
    writer: &mut (impl futures::AsyncWrite + Unpin),
    answers: LocalReceiver<JoinHandle<Answer>>,
) -> Result<(), EndReason> {
    while let Some(task) = answers.recv().await {
        match task.await {
            Some(Answer::Respond(bytes)) => {
                broker.metrics.borrow_mut().bytes_out +=
                    u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                writer.write_all(&bytes).await.map_err(EndReason::Write)?;
            }
            Some(Answer::Silent) => {}
            Some(Answer::Close(reason)) => return Err(EndReason::Protocol(reason)),
            None => {
                return Err(EndReason::Protocol(
                    "a request handler was cancelled".into(),
                ));
            }
        }
    }
    Ok(())
}
