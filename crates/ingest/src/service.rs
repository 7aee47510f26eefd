//! The tonic `IngestService`: Publish, PublishBatch and a pipelined
//! PublishStream, all through the group committer.

use crate::{
    proto::{
        ingest_service_server::IngestService, Event as ProtoEvent, PublishBatchRequest,
        PublishBatchResponse, PublishRequest, PublishResponse,
    },
    Accepted, CommitterHandle, Incoming, IngestError, IngestKeys, Publisher,
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
    pub(crate) max_request_events: usize,
    /// Most stream requests gathered into one append.
    stream_batch: usize,
    tasks: TaskTracker,
    /// Failed authentications per client address.
    failures: Arc<crate::AuthFailures>,
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
            max_request_events: config.max_request_events.max(1),
            stream_batch: config.max_batch_events.clamp(1, STREAM_BUFFER),
            tasks,
            failures: Arc::new(crate::AuthFailures::new(5, 20)),
        }
    }

    /// Limits failed authentications to `per_second` per client address,
    /// `burst` at once (default 5 and 20, REST's defaults).
    #[must_use]
    pub fn limit_auth_failures(mut self, per_second: u32, burst: u32) -> Self {
        self.failures = Arc::new(crate::AuthFailures::new(per_second, burst));
        self
    }

    /// The gRPC interceptor: authenticates the ingest key from the request
    /// headers *before* the message is read or decoded, so unauthenticated
    /// requests cost no more than their headers (docs/api.md, docs/security.md). The
    /// publisher rides on the request's extensions to the handler.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static
    {
        let keys = self.keys.clone();
        let failures = self.failures.clone();
        move |mut req: Request<()>| {
            let header = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let Some(publisher) = keys.authenticate(header) else {
                // A wrong or missing key: only as often as the client
                // address's failure budget allows.
                let addr = req
                    .extensions()
                    .get::<hookrelay_core::ClientAddr>()
                    .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.0);
                if let Err(wait) = failures.take(addr) {
                    metrics::counter!(metric::EVENTS_REJECTED, "reason" => "auth_failures_limited")
                        .increment(1);
                    let mut status = Status::resource_exhausted(format!(
                        "too many failed authentications from this address; retry in {wait} s"
                    ));
                    if let Ok(v) = wait.to_string().parse() {
                        status.metadata_mut().insert("retry-after", v);
                    }
                    return Err(status);
                }
                return Err(reject(IngestError::Unauthenticated));
            };
            req.extensions_mut().insert(publisher);
            Ok(req)
        }
    }

    /// The publisher the interceptor authenticated (authenticating here when
    /// the service runs without it, as in unit tests).
    fn publisher<T>(&self, req: &Request<T>) -> Result<Publisher, Status> {
        if let Some(p) = req.extensions().get::<Publisher>() {
            return Ok(p.clone());
        }
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.keys
            .authenticate(header)
            .ok_or_else(|| reject(IngestError::Unauthenticated))
    }

    fn permitted(&self, publisher: &Publisher, events: &[Incoming]) -> Result<(), Status> {
        self.keys
            .check(publisher, events.iter().map(|e| e.event.device_id.as_str()))
            .map_err(reject)
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
        for a in &accepted {
            tracing::debug!(event_id = %a.event_id, sequence = a.sequence, duplicate = a.duplicate, "event accepted");
        }
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
        let publisher = self.publisher(&req)?;
        let event = self
            .validate(req.into_inner().event, None)
            .map_err(reject)?;
        let events = vec![event];
        self.permitted(&publisher, &events)?;
        let mut accepted = self.append(events).await?;
        let a = accepted
            .pop()
            .ok_or_else(|| Status::internal("append answered nothing"))?;
        Ok(Response::new(response(a)))
    }

    async fn publish_batch(
        &self,
        req: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let publisher = self.publisher(&req)?;
        let events = req.into_inner().events;
        if events.len() > self.max_request_events {
            return Err(Status::invalid_argument(format!(
                "events: at most {} events per batch",
                self.max_request_events
            )));
        }
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.validate(Some(e), Some(i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(reject)?;
        self.permitted(&publisher, &events)?;
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
        let publisher = self.publisher(&req)?;
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
                    // A device the key may not publish for (or a key revoked
                    // meanwhile) ends the stream like a bad item.
                    let checked = msg
                        .and_then(|m| svc.validate(m.event, Some(index)).map_err(reject))
                        .and_then(|e| {
                            svc.permitted(&publisher, std::slice::from_ref(&e))
                                .map(|()| e)
                        });
                    match checked {
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
