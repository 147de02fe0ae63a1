//! A PostgreSQL database of its own for one test, on the server named by
//! `CS_INIT_TEST_POSTGRES` (a URL whose user may create databases), dropped after it. Shared by
//! the store's tests and the replicas' tests of the binary.

/// A database created for one test and dropped after it.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The database's URL.
    pub url: String,
}

impl TestDatabase {
    /// A new database on `CS_INIT_TEST_POSTGRES`'s server; `None` (the test skips) when it is
    /// not set, a panic when `CS_INIT_REQUIRE_POSTGRES` is.
    pub fn create() -> Option<Self> {
        let admin = match std::env::var("CS_INIT_TEST_POSTGRES") {
            Ok(url) => url,
            Err(_) if std::env::var_os("CS_INIT_REQUIRE_POSTGRES").is_some() => {
                panic!("CS_INIT_REQUIRE_POSTGRES is set but CS_INIT_TEST_POSTGRES is not")
            }
            Err(_) => {
                eprintln!("skipped: set CS_INIT_TEST_POSTGRES to a PostgreSQL URL to run this");
                return None;
            }
        };
        let admin = admin.as_str();
        let name = format!("cs_init_test_{:032x}", rand::random::<u128>());
        let mut client = ::postgres::Client::connect(admin, ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("CS_INIT_TEST_POSTGRES: cannot connect: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = admin.split('?').next().unwrap();
        let url = match base.rsplit_once('/') {
            Some((server, _)) if server.contains("://") && !server.ends_with('/') => {
                format!("{server}/{name}")
            }
            _ => format!("{base}/{name}"),
        };
        Some(Self {
            admin: admin.into(),
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
