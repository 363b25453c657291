//! Protobuf at the edge: `TryFrom<pb::X>` into the data plane's config types (the same types
//! the YAML file parses into, so one validator serves both) and `From<&XSpec>` back for reads.

mod from_proto;
mod to_proto;

#[cfg(test)]
mod tests;

use std::fmt;

use shoal_dataplane::snapshot::FieldError;

pub use from_proto::route_table as route_table_from_proto;
pub(crate) use from_proto::{endpoint as endpoint_from_proto, limits_spec, timeouts_spec};
pub use to_proto::route_table as route_table_to_proto;
pub(crate) use to_proto::{full_limits, full_timeouts};

/// A message that cannot become a config value; every problem with its field path (relative to
/// the message). Maps to gRPC `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConvertError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// proto -> config (a local trait: both types are foreign to this crate).
pub trait FromProto<P>: Sized {
    fn from_proto(p: P) -> Result<Self, ConvertError>;
}

/// config -> proto.
pub trait ToProto<P> {
    fn to_proto(&self) -> P;
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}
