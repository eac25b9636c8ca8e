//! Wire types and gRPC stubs generated from `proto/`, one module per protobuf package
//! (`cxhub_proto::touchpoint::v1::…`), and the encoded descriptor set for server reflection.
//!
//! Nothing but generated code lives here: conversions to and from the domain model are in the
//! service crates, where validation happens.

#![allow(clippy::all, missing_docs)]

/// The encoded `FileDescriptorSet` of every file under `proto/` (with source comments), for
/// server reflection and for checks over every RPC.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cxhub_descriptor.bin"));

/// `cxhub.touchpoint.*`
pub mod touchpoint {
    /// `cxhub.touchpoint.v1`: the touchpoint registry.
    pub mod v1 {
        tonic::include_proto!("cxhub.touchpoint.v1");
    }
}

/// `cxhub.common.*`
pub mod common {
    /// `cxhub.common.v1`: messages every service shares (money, customer references).
    pub mod v1 {
        tonic::include_proto!("cxhub.common.v1");
    }
}

/// `cxhub.feeds.*`
pub mod feeds {
    /// `cxhub.feeds.v1`: typed CRM, ERP and billing records.
    pub mod v1 {
        tonic::include_proto!("cxhub.feeds.v1");
    }
}

/// `cxhub.profile.*`
pub mod profile {
    /// `cxhub.profile.v1`: the unified customer profile.
    pub mod v1 {
        tonic::include_proto!("cxhub.profile.v1");
    }
}

/// `cxhub.scoring.*`
pub mod scoring {
    /// `cxhub.scoring.v1`: surveys, responses and the scores measured from them.
    pub mod v1 {
        tonic::include_proto!("cxhub.scoring.v1");
    }
}

/// `cxhub.loyalty.*`
pub mod loyalty {
    /// `cxhub.loyalty.v1`: loyalty actions, campaign budgets and the points ledger.
    pub mod v1 {
        tonic::include_proto!("cxhub.loyalty.v1");
    }
}
