//! The response bodies of [`Drain`](super::Drain), as poem [`Body`]s: `drain-tower`'s
//! [`GuardedBody`], boxed the way poem boxes every body.

use std::io;

use bytes::Bytes;
use drain_tower::GuardedBody;
use poem::Body;
use shutdown_core::RequestGuard;

/// The body type inside every poem [`Body`].
pub(crate) type BoxBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// `body` holding `guard` until it has ended, failed or been dropped.
pub(crate) fn guarded(body: Body, guard: RequestGuard) -> Body {
    Body::from(BoxBody::new(GuardedBody::new(
        BoxBody::from(body),
        Some(guard),
    )))
}

/// The `503` message, sent once the rejected request's body has been read to its end or
/// for `discard_limit` bytes (`None`: not read at all).
pub(crate) fn rejected(request_body: Body, discard_limit: Option<u64>) -> Body {
    Body::from(BoxBody::new(GuardedBody::<BoxBody>::rejection(
        BoxBody::from(request_body),
        discard_limit.unwrap_or(0),
    )))
}
