//! A fresh catalog per test on either backend, and the records most checks
//! start from: offices, specialists, cases with images.

use std::sync::Arc;
use std::time::Duration;

use relay_workers::audit::{Actor, AuditContext};
use relay_workers::catalog::{
    Accounts, Cases, CatalogError, Images, PoolSettings, Queue, SqlCatalog,
};
use relay_workers::model::{
    Case, CaseScope, DeriveState, Image, ImageId, MediaType, Name, NewCase, NewUser, Office,
    Principal, Sha256, Specialty, Timestamp, User,
};
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

/// Runs each named check (an `async fn(&Db)` in the same module) once per
/// backend, as `<check>::sqlite` and `<check>::postgres`. Without a
/// PostgreSQL server the second skips loudly (fails under
/// `RELAY_REQUIRE_SERVICES=1`).
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::conformance::fixture::Db::sqlite().await;
                super::$check(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(db) = $crate::conformance::fixture::Db::postgres(test).await {
                    super::$check(&db).await;
                    db.finish().await;
                }
            }
        }
    )*};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One catalog on its own database, and a side door into that database for
/// what the traits rightly do not offer: moving time forward, and proving
/// that the database itself refuses to rewrite history.
pub struct Db {
    pub catalog: Arc<SqlCatalog>,
    pub backend: Backend,
    pub url: String,
    raw: AnyPool,
    /// The PostgreSQL server the database was created on, to drop it after.
    server: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let catalog = connect(&url, &PoolSettings::default()).await;
        Db {
            raw: raw_pool(&url).await,
            catalog,
            backend: Backend::Sqlite,
            url,
            server: None,
            _dir: Some(dir),
        }
    }

    /// A fresh database on the test server, or `None` (skipped).
    pub async fn postgres(test: &str) -> Option<Db> {
        let server = relay_workers::testing::postgres(test)?;
        Some(Db::postgres_on(&server, &PoolSettings::default()).await)
    }

    pub async fn postgres_on(server: &str, settings: &PoolSettings) -> Db {
        let url = relay_workers::testing::fresh_postgres_database(server)
            .await
            .expect("fresh database");
        let catalog = connect(&url, settings).await;
        Db {
            raw: raw_pool(&url).await,
            catalog,
            backend: Backend::Postgres,
            url,
            server: Some(server.to_owned()),
            _dir: None,
        }
    }

    /// Runs one statement beside the catalog; `$N` placeholders work on
    /// both backends through the `Any` driver.
    pub async fn execute(&self, sql: &'static str, id: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql)
            .bind(id)
            .execute(&self.raw)
            .await?
            .rows_affected())
    }

    pub async fn execute_text(&self, sql: &'static str, text: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql)
            .bind(text.to_owned())
            .execute(&self.raw)
            .await?
            .rows_affected())
    }

    /// Moves a queued job's `run_at` into the past (its backoff, fast-forwarded).
    pub async fn make_ready(&self, job: i64) {
        let changed = self
            .execute("UPDATE jobs SET run_at = 0 WHERE id = $1", job)
            .await
            .expect("make ready");
        assert_eq!(changed, 1);
    }

    /// Closes the pools; on PostgreSQL drops the test's database. A test
    /// that failed leaves its database behind to be looked at.
    pub async fn finish(self) {
        self.catalog.close().await;
        self.raw.close().await;
        if let Some(server) = &self.server {
            let name = self.url.rsplit('/').next().unwrap_or_default();
            let name = name.split('?').next().unwrap_or_default().to_owned();
            let admin = raw_pool(server).await;
            // `name` was made by `fresh_postgres_database`: letters, digits, `_`.
            let drop = sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            if let Err(error) = sqlx::query(drop).execute(&admin).await {
                eprintln!("could not drop test database {name}: {error}");
            }
            admin.close().await;
        }
    }

    // ---- records ----------------------------------------------------------

    pub async fn office(&self, name: &str) -> Party {
        let office = self
            .catalog
            .create_office(&AuditContext::operator(), text(name))
            .await
            .expect("office");
        let user = self
            .catalog
            .create_user(
                &AuditContext::operator(),
                NewUser::Office {
                    name: text(&format!("{name} staff")),
                    office: office.id,
                },
            )
            .await
            .expect("office user");
        Party::new(
            user.clone(),
            Principal::Office {
                user: user.id,
                office: office.id,
            },
            Some(office),
        )
    }

    pub async fn specialist(&self, specialty: Specialty) -> Party {
        let user = self
            .catalog
            .create_user(
                &AuditContext::operator(),
                NewUser::Specialist {
                    name: text("Dr. Reader"),
                    specialty,
                },
            )
            .await
            .expect("specialist");
        Party::new(
            user.clone(),
            Principal::Specialist {
                user: user.id,
                specialty,
            },
            None,
        )
    }

    /// A draft dermatology case of `office`'s.
    pub async fn draft(&self, office: &Party) -> Case {
        self.draft_of(office, Specialty::Dermatology, "routine")
            .await
    }

    pub async fn draft_of(&self, office: &Party, specialty: Specialty, priority: &str) -> Case {
        let new: NewCase = serde_json::from_value(serde_json::json!({
            "patient": {
                "name": "Ada Example",
                "birth_date": "1970-01-02",
                "sex": "female",
                "mrn": "MRN-1",
            },
            "specialty": specialty.as_str(),
            "question": "Is this lesion benign?",
            "priority": priority,
        }))
        .expect("new case");
        let case = Case::draft(new, office.office_id(), office.user.id, Timestamp::now());
        self.catalog
            .create_case(&office.ctx, &case)
            .await
            .expect("create case");
        case
    }

    /// An image of `bytes` for `case`, as ingest would record it.
    pub fn image(&self, office: &Party, case: &Case, bytes: &[u8]) -> Image {
        let sha = Sha256::of(bytes);
        let size = u64::try_from(bytes.len()).expect("size");
        Image {
            id: ImageId::generate(),
            case_id: case.id,
            office_id: case.office_id,
            uploaded_by: office.user.id,
            filename: Some("lesion.jpg".to_owned()),
            media_type: MediaType::Jpeg,
            sha256: sha,
            size,
            stored_sha256: sha,
            stored_size: size,
            received_at: Timestamp::now(),
            metadata: serde_json::json!({ "width": 4, "height": 3 }),
            derive_state: DeriveState::Pending,
            derive_error: None,
            frames: None,
            attributes: None,
        }
    }

    pub async fn attach(&self, office: &Party, case: &Case, bytes: &[u8]) -> Image {
        let image = self.image(office, case, bytes);
        let (stored, created) = self
            .catalog
            .add_image(&office.ctx, office.scope(), &image, None)
            .await
            .expect("add image");
        assert!(created);
        stored
    }

    /// A case of `office`'s with one image, submitted to its worklist.
    pub async fn submitted(&self, office: &Party, specialty: Specialty, priority: &str) -> Case {
        let case = self.draft_of(office, specialty, priority).await;
        self.attach(office, &case, case.id.to_string().as_bytes())
            .await;
        self.catalog
            .submit_case(&office.ctx, office.scope(), case.id)
            .await
            .expect("submit")
    }

    /// Every job of `kind`, oldest first.
    pub async fn jobs_of(&self, kind: &str) -> Vec<relay_workers::queue::JobRecord> {
        let mut jobs = self
            .catalog
            .list_jobs(&relay_workers::queue::JobFilter {
                state: None,
                kind: Some(kind.to_owned()),
                limit: 1000,
            })
            .await
            .expect("jobs");
        jobs.reverse();
        jobs
    }
}

/// Someone acting on the catalog: who they are and how they are audited.
#[derive(Debug, Clone)]
pub struct Party {
    pub user: User,
    pub principal: Principal,
    pub office: Option<Office>,
    pub ctx: AuditContext,
}

impl Party {
    fn new(user: User, principal: Principal, office: Option<Office>) -> Self {
        let ctx = AuditContext {
            actor: Actor::User(principal.clone()),
            remote_addr: "127.0.0.1".to_owned(),
            request_id: Some(relay_workers::testing::unique_name("req")),
        };
        Party {
            user,
            principal,
            office,
            ctx,
        }
    }

    pub fn scope(&self) -> CaseScope {
        self.principal.case_scope()
    }

    pub fn office_id(&self) -> relay_workers::model::OfficeId {
        self.office.as_ref().expect("an office party").id
    }
}

pub fn text(s: &str) -> Name {
    Name::try_from(s.to_owned()).expect("name")
}

/// Runs `f` until it returns `true` or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Asserts the error kind, with the error in the message when it differs.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(
    result: Result<T, CatalogError>,
    expected: fn(&CatalogError) -> bool,
    what: &str,
) {
    match result {
        Err(ref e) if expected(e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    }
}

async fn connect(url: &str, settings: &PoolSettings) -> Arc<SqlCatalog> {
    Arc::new(
        SqlCatalog::connect(url, settings)
            .await
            .expect("catalog connects"),
    )
}

async fn raw_pool(url: &str) -> AnyPool {
    install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("raw connection")
}
