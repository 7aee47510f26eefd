//! The tonic `IngestService`: Publish, PublishBatch and a pipelined
//! PublishStream, all through the group committer.

use crate::{
    proto::{
        ingest_service_server::IngestService, Event as ProtoEvent, PublishBatchRequest,
        PublishBatchResponse, PublishRequest, PublishResponse,
    },
    Accepted, CommitterHandle, Incoming, IngestError, IngestKeys,
};
use hookrelay_core::{metric, now_ms, validate_event, Catalog, RawEvent};
use std::{pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

/// Most stream requests buffered between the reader and the appender.
const STREAM_BUFFER: usize = 1024;

/// The gRPC ingest service.
#[derive(Clone)]
pub struct IngestGrpc {
    pub(crate) committer: CommitterHandle,
    pub(crate) keys: Arc<IngestKeys>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) max_event_bytes: usize,
    /// Most stream requests gathered into one append.
    stream_batch: usize,
    tasks: TaskTracker,
}

impl IngestGrpc {
    /// A service appending through `committer`; stream tasks go on `tasks`.
    pub fn new(
        committer: CommitterHandle,
        keys: IngestKeys,
        catalog: Arc<Catalog>,
        config: &crate::IngestConfig,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            committer,
            keys: Arc::new(keys),
            catalog,
            max_event_bytes: config.max_event_bytes,
            stream_batch: config.max_batch_events.clamp(1, STREAM_BUFFER),
            tasks,
        }
    }

    fn authenticate<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.keys.check_bearer(header) {
            Ok(())
        } else {
            Err(reject(IngestError::Unauthenticated))
        }
    }

    fn validate(
        &self,
        event: Option<ProtoEvent>,
        index: Option<usize>,
    ) -> Result<Incoming, IngestError> {
        let e = event.ok_or(IngestError::Missing("event"))?;
        let occurred_at_ms = match e.occurred_at {
            None => None,
            Some(ts) => Some(timestamp_ms(&ts).ok_or_else(|| IngestError::Invalid {
                index,
                source: hookrelay_core::EventError {
                    field: "occurred_at",
                    message: "is not a valid timestamp".into(),
                },
            })?),
        };
        let keyed = !e.id.is_empty();
        let raw = RawEvent {
            id: e.id,
            device_id: e.device_id,
            event_type: e.event_type,
            occurred_at_ms,
            data: e.data,
        };
        validate_event(raw, &self.catalog, self.max_event_bytes, now_ms())
            .map(|event| Incoming { event, keyed })
            .map_err(|source| IngestError::Invalid { index, source })
    }

    async fn append(&self, events: Vec<Incoming>) -> Result<Vec<Accepted>, Status> {
        let n = events.len() as u64;
        let accepted = self.committer.append(events).await.map_err(reject)?;
        metrics::counter!(metric::EVENTS_INGESTED, "source" => "grpc").increment(n);
        Ok(accepted)
    }
}

fn timestamp_ms(ts: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    ts.seconds
        .checked_mul(1000)?
        .checked_add(i64::from(ts.nanos / 1_000_000))
}

fn reject(e: IngestError) -> Status {
    metrics::counter!(metric::EVENTS_REJECTED, "reason" => e.reason()).increment(1);
    e.into()
}

fn response(a: Accepted) -> PublishResponse {
    PublishResponse {
        event_id: a.event_id,
        sequence: a.sequence,
        duplicate: a.duplicate,
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    async fn publish(
        &self,
        req: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        self.authenticate(&req)?;
        let event = self
            .validate(req.into_inner().event, None)
            .map_err(reject)?;
        let mut accepted = self.append(vec![event]).await?;
        let a = accepted
            .pop()
            .ok_or_else(|| Status::internal("append answered nothing"))?;
        Ok(Response::new(response(a)))
    }

    async fn publish_batch(
        &self,
        req: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        self.authenticate(&req)?;
        let events = req
            .into_inner()
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.validate(Some(e), Some(i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(reject)?;
        let accepted = self.append(events).await?;
        Ok(Response::new(PublishBatchResponse {
            results: accepted.into_iter().map(response).collect(),
        }))
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        req: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        self.authenticate(&req)?;
        let mut inbound = req.into_inner();
        // Reader → processor, bounded: a producer that runs ahead waits on
        // HTTP/2 flow control once this fills.
        let (in_tx, mut in_rx) = mpsc::channel::<Result<PublishRequest, Status>>(STREAM_BUFFER);
        let (out_tx, out_rx) = mpsc::channel::<Result<PublishResponse, Status>>(STREAM_BUFFER);
        self.tasks.spawn(async move {
            while let Some(msg) = inbound.next().await {
                let stop = msg.is_err();
                if in_tx.send(msg).await.is_err() || stop {
                    break;
                }
            }
        });
        let svc = self.clone();
        self.tasks.spawn(async move {
            let mut index = 0usize;
            let batch = svc.stream_batch;
            let mut buf = Vec::with_capacity(batch);
            while in_rx.recv_many(&mut buf, batch).await > 0 {
                let mut events = Vec::with_capacity(buf.len());
                let mut failure = None;
                for msg in buf.drain(..) {
                    match msg.and_then(|m| svc.validate(m.event, Some(index)).map_err(reject)) {
                        Ok(e) => events.push(e),
                        Err(status) => {
                            failure = Some(status);
                            break;
                        }
                    }
                    index += 1;
                }
                // Everything before a bad item is appended and acknowledged first.
                if !events.is_empty() {
                    match svc.append(events).await {
                        Ok(accepted) => {
                            for a in accepted {
                                if out_tx.send(Ok(response(a))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(status) => {
                            let _ = out_tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                if let Some(status) = failure {
                    let _ = out_tx.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}
