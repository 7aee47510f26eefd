//! The protobuf codec of the ingest service: prost's, except that a request
//! message that does not decode answers `INVALID_ARGUMENT` (docs/api.md,
//! gRPC errors) instead of `INTERNAL`. tonic-prost follows gRPC's table,
//! where a parse failure is INTERNAL, but for a server taking messages
//! from producers a malformed one is the caller's error and must not be
//! retried as if the engine had failed.

use std::marker::PhantomData;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Code, Status,
};
use tonic_prost::{prost::Message, ProstDecoder, ProstEncoder};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrictCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// prost's decoder, with a decode failure made the caller's.
#[derive(Debug)]
pub(crate) struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| match s.code() {
            Code::Internal => {
                Status::invalid_argument(format!("malformed request message: {}", s.message()))
            }
            _ => s,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
