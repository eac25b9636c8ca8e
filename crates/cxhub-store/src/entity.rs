//! sea-orm entities of the registry tables (the schema itself lives in `cxhub-migrations`).
//!
//! Ids are UUIDs stored as text, enums as their stable text (`Channel::as_str`), timestamps
//! in UTC rounded to microseconds.

/// `touchpoints`: one row per touchpoint.
pub mod touchpoint {
    use sea_orm::entity::prelude::*;

    /// A row of `touchpoints`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "touchpoints")]
    pub struct Model {
        /// Touchpoint id (UUID).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Unique key.
        pub key: String,
        /// Display name.
        pub name: String,
        /// Description.
        pub description: String,
        /// Channel (`Channel::as_str`).
        pub channel: String,
        /// Journey stage (`Stage::as_str`).
        pub stage: String,
        /// Owning department.
        pub department: String,
        /// Main (true) or sub (false) touchpoint.
        pub is_main: bool,
        /// Parent id, if any.
        pub parent_id: Option<String>,
        /// Target NPS.
        pub target_nps: Option<i32>,
        /// Target CSAT.
        pub target_csat: Option<f64>,
        /// Target CES.
        pub target_ces: Option<f64>,
        /// The label map as JSON, for reading back.
        pub labels_json: String,
        /// Lifecycle state (`LifecycleState::as_str`).
        pub state: String,
        /// Revision, from 1.
        pub revision: i64,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared: joins are written out where they are needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `touchpoint_labels`: one row per label, for label filters.
pub mod touchpoint_label {
    use sea_orm::entity::prelude::*;

    /// A row of `touchpoint_labels`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "touchpoint_labels")]
    pub struct Model {
        /// The labelled touchpoint.
        #[sea_orm(primary_key, auto_increment = false)]
        pub touchpoint_id: String,
        /// Label key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Label value.
        pub value: String,
    }

    /// No relations are declared.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `journeys`: one row per journey.
pub mod journey {
    use sea_orm::entity::prelude::*;

    /// A row of `journeys`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "journeys")]
    pub struct Model {
        /// Journey id (UUID).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Unique key.
        pub key: String,
        /// Display name.
        pub name: String,
        /// Description.
        pub description: String,
        /// Lifecycle state.
        pub state: String,
        /// Revision, from 1.
        pub revision: i64,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `journey_stages`: the ordered stages of a journey.
pub mod journey_stage {
    use sea_orm::entity::prelude::*;

    /// A row of `journey_stages`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_stages")]
    pub struct Model {
        /// The journey.
        #[sea_orm(primary_key, auto_increment = false)]
        pub journey_id: String,
        /// Position of the stage in the journey, from 0.
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        /// Display name.
        pub name: String,
        /// The journey stage it stands for (`Stage::as_str`).
        pub stage: String,
    }

    /// No relations are declared.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `journey_stage_touchpoints`: the ordered touchpoints of each stage.
pub mod journey_stage_touchpoint {
    use sea_orm::entity::prelude::*;

    /// A row of `journey_stage_touchpoints`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_stage_touchpoints")]
    pub struct Model {
        /// The journey.
        #[sea_orm(primary_key, auto_increment = false)]
        pub journey_id: String,
        /// Position of the stage, from 0.
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        /// Position of the touchpoint in the stage, from 0.
        #[sea_orm(primary_key, auto_increment = false)]
        pub ordinal: i32,
        /// The touchpoint.
        pub touchpoint_id: String,
    }

    /// No relations are declared.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `idempotency_keys`: the first result of each mutating request.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    /// A row of `idempotency_keys`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// Who called.
        #[sea_orm(primary_key, auto_increment = false)]
        pub principal: String,
        /// Full gRPC method.
        #[sea_orm(primary_key, auto_increment = false)]
        pub method: String,
        /// The caller's request id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// Hex SHA-256 of the request payload.
        pub fingerprint: String,
        /// The result, as JSON.
        pub response: String,
        /// When the request was first served.
        pub created_at: DateTimeUtc,
    }

    /// No relations are declared.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
