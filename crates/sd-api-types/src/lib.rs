//! The native job API's wire types, defined once for the server (`sd-server`, `sd-engine`) and the client SDK
//! (`sd-client`, native and wasm32), so the two can never drift. Only serde (and, behind the `openapi`
//! feature, utoipa schemas): no async runtime, no HTTP stack, nothing that keeps it from compiling to wasm32.
//!
//! Every type serializes exactly as the server has always sent it; the client-facing additions are
//! `Deserialize` on responses and `Serialize` on the request, with fields the server omits defaulted.

mod job;
mod request;
mod response;

pub use job::{JobError, JobEvent, JobStatus, JobTimings, Operation, Progress};
pub use request::{JobBody, LoraField, OperationName, PromptSyntax, UnknownPromptSyntax};
pub use response::{
    CancelResponse, Defaults, ErrorBody, ErrorDetail, Health, Info, JobAccepted, JobList,
    JobResultView, JobView, Limits, LoraEntry, LoraList, ModelList, ModelObject, QueueInfo,
    ReadyStatus,
};
