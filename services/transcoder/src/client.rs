//! Helpers for callers of the transcoder's gRPC API (Parley's gateway, the
//! benchmarks, and users' own systems).

use parley_proto::transcoder::{
    ConvertStart, ConvertStreamRequest, InputSpec, OutputSpec, convert_stream_request::Message,
};

/// The messages of one `ConvertStream` call for a file held in memory: the
/// start (declaring the size, so oversized input is refused before any
/// upload), then `audio` in chunks of `chunk_bytes`.
pub fn convert_stream_requests(
    audio: &[u8],
    input: InputSpec,
    output: OutputSpec,
    chunk_bytes: usize,
) -> impl Iterator<Item = ConvertStreamRequest> + '_ {
    let start = ConvertStreamRequest {
        message: Some(Message::Start(ConvertStart {
            input: Some(input),
            output: Some(output),
            input_size_bytes: audio.len() as u64,
            exact_size_header: false,
        })),
    };
    std::iter::once(start).chain(audio.chunks(chunk_bytes.max(1)).map(|chunk| {
        ConvertStreamRequest {
            message: Some(Message::Chunk(chunk.to_vec().into())),
        }
    }))
}
