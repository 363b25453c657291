//! Shoal's gRPC API: the generated code for `proto/shoal/admin/v1/admin.proto` (config reads,
//! transactions, watch) and `proto/shoal/ca/v1/ca.proto` (certificate authority).
//!
//! The `.proto` files are the contract (documented field by field there); this crate only
//! includes what `build.rs` generated from them with protox + tonic-prost-build. Conversions to
//! and from the data plane's config types live in `shoal-admin`, never here.

/// `shoal.admin.v1`: config reads, `Apply` transactions and the `Watch` stream.
pub mod admin {
    pub mod v1 {
        #![allow(clippy::all, missing_docs, unreachable_pub)]
        tonic::include_proto!("shoal.admin.v1");
    }
}

/// `shoal.ca.v1`: the certificate authority as a service.
pub mod ca {
    pub mod v1 {
        #![allow(clippy::all, missing_docs, unreachable_pub)]
        tonic::include_proto!("shoal.ca.v1");
    }
}

/// The encoded `FileDescriptorSet` of every Shoal proto (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shoal_descriptor.bin"));
