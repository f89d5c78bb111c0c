//! What a user writes first: an entity that declares its tenancy, and scoped reads and writes
//! through `TenantDb` and `TenantRepo`. It only has to compile, under every feature set.

/// A tenant-owned entity.
pub mod note {
    #![allow(missing_docs, reason = "SeaORM's generated items")]

    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "note")]
    #[tenant(unique(title))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::comment::Entity")]
        Comment,
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A comment on a note, in the note's tenant.
pub mod comment {
    #![allow(missing_docs, reason = "SeaORM's generated items")]

    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "comment")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub note_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::note::Entity",
            from = "Column::NoteId",
            to = "super::note::Column::Id"
        )]
        Note,
    }

    impl Related<super::note::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Note.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

#[cfg(tenant_spellings)]
pub mod spellings;

use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
use tenant::{TenantDb, TenantRepo};

/// Adds a note for the tenant in scope and reads back the notes with its title.
///
/// # Errors
///
/// Whatever the scoped operations fail with.
pub async fn add_and_find(db: &TenantDb, title: &str) -> tenant::Result<Vec<note::Model>> {
    TenantRepo::<note::Entity>::new(db)
        .insert(note::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            title: Set(title.to_owned()),
            ..Default::default()
        })
        .await?;
    note::Entity::find()
        .filter(note::Column::Title.eq(title))
        .all(db)
        .await
}
