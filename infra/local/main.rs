//! `twin`: a Docker-free local copy of this project's AWS stack.
//!
//! It reads the SAM template, starts DynamoDB Local and moto, creates the tables and queues,
//! serves the HTTP API and runs the event-source mappings (DynamoDB Streams, SQS) and the
//! schedules (`Type: Schedule` events) by running the very same Lambda `bootstrap` binaries
//! behind a Lambda Runtime API it hosts itself (one child process per warm instance).

mod buckets;
mod control;
mod esm;
mod filter;
mod http_api;
mod logs;
mod queues;
mod resources;
mod runtime;
mod schedule_expr;
mod schedules;
mod services;
mod sqs_source;
mod streams;
mod template;

use services::{DynamoData, Service};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use template::{Template, REGION};

const USAGE: &str = "\
usage: twin [--template infra/template.yaml] [--bin-dir target/debug] [--data-dir DIR | --in-memory]
            [--param Name=Value ...] [--exit-on-stdin-eof] [--log-dir DIR]

environment: API_PORT=3000 DYNAMODB_PORT=8000 MOTO_PORT=5000 PSP_PORT=4000 (0 = any free port),
  TWIN_CONTROL_PORT (the twin's own /__twin/ routes; default API_PORT + 1, or any free port),
  DEV_API_KEY, PSP_SECRET_KEY, PSP_WEBHOOK_SECRET, DYNAMODB_LOCAL_JAR, DYNAMODB_LOCAL_LAUNCHER_DIR, MOTO_SERVER,
  TWIN_MAX_INSTANCES=32 (per function), TWIN_PREWARM=0 (instances started per function at start),
  TWIN_ECHO_LOGS=1 (echo function logs to stderr),
  TWIN_THREADS=0 (0: one event-loop thread, the leanest on 2 cores; N: N worker threads),
  TWIN_HEADER_READ_TIMEOUT_MS=30000, TWIN_BODY_READ_TIMEOUT_MS=60000 (slow clients are dropped)";

const DEFAULT_DATA_DIR: &str = ".local/data";
/// Stream checkpoints under the data dir (with `--data-dir` only).
const DEFAULT_LOG_DIR: &str = ".local/logs";
const DEV_ACCOUNT: &str = "acct_dev";
const STARTUP_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct Config {
    template: PathBuf,
    bin_dir: PathBuf,
    data: DynamoData,
    /// Where the streams' checkpoints are kept (None: in memory, with `--in-memory`).
    checkpoint_file: Option<PathBuf>,
    log_dir: PathBuf,
    params: Vec<(String, String)>,
    exit_on_stdin_eof: bool,
    api_listener: std::net::TcpListener,
    api_port: u16,
    control_listener: std::net::TcpListener,
    control_port: u16,
    dynamodb_port: u16,
    moto_port: u16,
    psp_port: u16,
    dev_api_key: String,
    psp_secret_key: String,
    psp_webhook_secret: String,
    jar: Option<String>,
    launcher_dir: Option<String>,
    moto_server: PathBuf,
    max_instances: usize,
    prewarm: usize,
    header_read_timeout: std::time::Duration,
    body_read_timeout: std::time::Duration,
    echo_logs: bool,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
        None => Ok(default),
    }
}

/// Where the twin looks for a free port for a service it starts: below Linux's ephemeral range
/// (32768–60999), so that no outgoing connection's source port (the twin's own readiness
/// checks, say) can take it between the choice and the service's bind.
const FREE_PORTS: std::ops::Range<u16> = 20_000..32_000;
const FREE_PORT_TRIES_MAX: usize = 200;

/// A port from the environment; 0 means any free port (one that binds now, then released for
/// the service to take). A fixed port must be free now (else a service would fail late, or we
/// would talk to a stranger).
fn port(name: &str, default: u16) -> Result<u16, String> {
    let p: u16 = env_number(name, default)?;
    if p != 0 {
        return std::net::TcpListener::bind(("127.0.0.1", p))
            .map(|_| p)
            .map_err(|e| format!("{name}={p}: port not available ({e})"));
    }
    (0..FREE_PORT_TRIES_MAX)
        .map(|_| {
            FREE_PORTS.start + (uuid::Uuid::new_v4().as_u128() % u128::from(FREE_PORTS.len() as u16)) as u16
        })
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| format!("cannot find a free port for {name} in {FREE_PORTS:?}"))
}

fn parse_args() -> Result<Config, String> {
    let mut template = PathBuf::from("infra/template.yaml");
    let mut bin_dir = PathBuf::from("target/debug");
    let mut data_dir: Option<PathBuf> = None;
    let mut in_memory = false;
    let mut log_dir = PathBuf::from(DEFAULT_LOG_DIR);
    let mut params = Vec::new();
    let mut exit_on_stdin_eof = false;

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match flag.as_str() {
            "--template" => template = value("--template")?.into(),
            "--bin-dir" => bin_dir = value("--bin-dir")?.into(),
            "--data-dir" => data_dir = Some(value("--data-dir")?.into()),
            "--in-memory" => in_memory = true,
            "--log-dir" => log_dir = value("--log-dir")?.into(),
            "--param" => {
                let p = value("--param")?;
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("--param {p}: expected Name=Value"))?;
                params.push((k.to_string(), v.to_string()));
            }
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if in_memory && data_dir.is_some() {
        return Err("--data-dir and --in-memory exclude each other".into());
    }
    let (data, checkpoint_file) = if in_memory {
        (DynamoData::InMemory, None)
    } else {
        let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        // Stream checkpoints are deliberately not persisted: moto (SQS) keeps its queues in
        // memory, so after a restart the stream is replayed from TRIM_HORIZON and anything that
        // was in flight is relayed again. The consumers deduplicate by event id: nothing is lost
        // and nothing is applied twice.
        (DynamoData::Dir(dir.join("dynamodb")), None)
    };

    let requested_api: u16 = env_number("API_PORT", 3000)?;
    let api_listener = std::net::TcpListener::bind(("127.0.0.1", requested_api))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{requested_api} (API_PORT): {e}"))?;
    let api_port = api_listener.local_addr().map_err(|e| e.to_string())?.port();
    let requested_control: u16 = env_number(
        "TWIN_CONTROL_PORT",
        if requested_api == 0 {
            0
        } else {
            requested_api.saturating_add(1)
        },
    )?;
    let control_listener = std::net::TcpListener::bind(("127.0.0.1", requested_control))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{requested_control} (TWIN_CONTROL_PORT): {e}"))?;
    let control_port = control_listener.local_addr().map_err(|e| e.to_string())?.port();

    Ok(Config {
        template,
        bin_dir,
        data,
        checkpoint_file,
        log_dir,
        params,
        exit_on_stdin_eof,
        api_listener,
        api_port,
        control_listener,
        control_port,
        dynamodb_port: port("DYNAMODB_PORT", 8000)?,
        moto_port: port("MOTO_PORT", 5000)?,
        psp_port: port("PSP_PORT", 4000)?,
        dev_api_key: env_or("DEV_API_KEY", DEFAULT_DEV_API_KEY),
        psp_secret_key: env_or("PSP_SECRET_KEY", "sk_test_sandbox_51PsysLocalDev"),
        psp_webhook_secret: env_or("PSP_WEBHOOK_SECRET", "whsec_sandbox_localdev_7c1e9a"),
        jar: std::env::var("DYNAMODB_LOCAL_JAR").ok().filter(|v| !v.is_empty()),
        launcher_dir: std::env::var("DYNAMODB_LOCAL_LAUNCHER_DIR")
            .ok()
            .filter(|v| !v.is_empty()),
        moto_server: env_or("MOTO_SERVER", services::DEFAULT_MOTO).into(),
        max_instances: env_number("TWIN_MAX_INSTANCES", 32)?,
        prewarm: env_number("TWIN_PREWARM", 0)?,
        header_read_timeout: std::time::Duration::from_millis(env_number(
            "TWIN_HEADER_READ_TIMEOUT_MS",
            http_api::HEADER_READ_TIMEOUT.as_millis() as u64,
        )?),
        body_read_timeout: std::time::Duration::from_millis(env_number(
            "TWIN_BODY_READ_TIMEOUT_MS",
            http_api::BODY_READ_TIMEOUT.as_millis() as u64,
        )?),
        echo_logs: std::env::var("TWIN_ECHO_LOGS").is_ok_and(|v| v == "1" || v == "true"),
    })
}

/// The AWS variables the twin and every function process get.
fn aws_env(cfg: &Config) -> Vec<(String, String)> {
    let ddb = format!("http://127.0.0.1:{}", cfg.dynamodb_port);
    let moto = format!("http://127.0.0.1:{}", cfg.moto_port);
    [
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "local".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", ddb),
        ("AWS_ENDPOINT_URL_SQS", moto.clone()),
        ("AWS_ENDPOINT_URL_S3", moto),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twin: error: {e}");
            return ExitCode::from(2);
        }
    };
    let base_env = aws_env(&cfg);
    // Set while still single-threaded, before the runtime starts.
    for (k, v) in &base_env {
        std::env::set_var(k, v);
    }
    let threads: usize = std::env::var("TWIN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let built = if threads == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twin: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cfg, base_env));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twin: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Seed the dev API key into the ApiKeysTable (idempotent: a restart keeps its key id).
async fn seed_dev_key(
    client: &aws_sdk_dynamodb::Client,
    table: Option<&str>,
    raw_key: &str,
) -> Result<(), String> {
    let Some(table) = table else {
        eprintln!("twin: warning: the template has no ApiKeysTable; DEV_API_KEY not seeded");
        return Ok(());
    };
    let account = shared::domain::ids::AccountId::parse(DEV_ACCOUNT)
        .map_err(|e| format!("account id {DEV_ACCOUNT}: {e}"))?;
    let key_id = shared::adapters::dynamo::api_keys::seed_api_key(client, table, raw_key, &account, None)
        .await
        .map_err(|e| format!("cannot seed DEV_API_KEY into {table}: {e}"))?;
    eprintln!("twin: DEV_API_KEY seeded in {table} (account {DEV_ACCOUNT}, key id {key_id})");
    Ok(())
}

async fn run(cfg: Config, base_env: Vec<(String, String)>) -> Result<(), String> {
    let t0 = Instant::now();
    let moto_endpoint = format!("http://127.0.0.1:{}", cfg.moto_port);
    let ddb_endpoint = format!("http://127.0.0.1:{}", cfg.dynamodb_port);

    // Everything that can be checked without the services, first.
    let psp_endpoint = format!("http://127.0.0.1:{}", cfg.psp_port);
    let api_endpoint = format!("http://127.0.0.1:{}", cfg.api_port);
    let twin_values = [
        ("PspApiBase", psp_endpoint.clone()),
        ("PspSecretKey", cfg.psp_secret_key.clone()),
        ("PspWebhookSecret", cfg.psp_webhook_secret.clone()),
        ("PublicBaseUrl", api_endpoint.clone()),
        // Fresh each start: a cursor does not outlive the twin that made it.
        (
            "CursorSecret",
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let tpl = Template::load(&cfg.template, &cfg.params, &twin_values).map_err(|e| e.to_string())?;
    let tables = tpl.tables().map_err(|e| e.to_string())?;
    let preliminary = template::Runtime {
        moto_endpoint: moto_endpoint.clone(),
        attributes: tables
            .iter()
            .filter(|t| t.stream_view_type.is_some())
            .map(|t| {
                (
                    (t.logical_id.clone(), "StreamArn".to_string()),
                    format!("{}/stream/pending", template::table_arn(&t.name)),
                )
            })
            .collect(),
    };
    tpl.queues(&preliminary).map_err(|e| e.to_string())?;
    tpl.buckets(&preliminary).map_err(|e| e.to_string())?;
    tpl.functions(&preliminary).map_err(|e| e.to_string())?;
    let dynamodb_local = services::find_dynamodb_local(cfg.jar.clone(), cfg.launcher_dir.clone())?;
    std::fs::create_dir_all(&cfg.log_dir)
        .map_err(|e| format!("cannot create log dir {}: {e}", cfg.log_dir.display()))?;

    let ddb = Arc::new(services::DynamoDb::start(
        &dynamodb_local,
        cfg.dynamodb_port,
        cfg.data.clone(),
        &cfg.log_dir,
    )?);
    let mut moto = services::start_moto(
        &cfg.moto_server,
        &cfg.template.with_file_name("local/moto/launch.py"),
        cfg.moto_port,
        &cfg.log_dir,
    )?;
    let mut psp = services::start_sandbox_psp(
        &cfg.bin_dir.join("sandbox_psp"),
        cfg.psp_port,
        &cfg.psp_secret_key,
        &cfg.psp_webhook_secret,
        &cfg.log_dir,
    )?;
    let (ddb_ready, moto_ready, psp_ready) = tokio::join!(
        ddb.wait_ready(services::READY_TIMEOUT),
        moto.wait_ready(services::READY_TIMEOUT),
        psp.wait_ready(services::READY_TIMEOUT)
    );
    let ddb_ready = ddb_ready?;
    let moto_ready = moto_ready?;
    psp_ready?;
    register_webhook(
        &psp_endpoint,
        &cfg.psp_secret_key,
        &format!("{api_endpoint}/webhooks/psp"),
    )
    .await?;
    eprintln!(
        "twin: DynamoDB Local up in {:.1} s, moto up in {:.1} s",
        ddb_ready.as_secs_f64(),
        moto_ready.as_secs_f64()
    );

    let sdk = shared::adapters::aws::static_sdk_config(&ddb_endpoint, REGION, "local", "local").await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let attributes = tokio::time::timeout(STARTUP_CALL_TIMEOUT, resources::create_tables(&client, &tables))
        .await
        .map_err(|_| format!("DynamoDB Local did not answer within {STARTUP_CALL_TIMEOUT:?}"))??;
    let moto_sdk = shared::adapters::aws::static_sdk_config(&moto_endpoint, REGION, "local", "local").await;
    let queue_specs = tpl
        .queues(&template::Runtime {
            moto_endpoint: moto_endpoint.clone(),
            attributes: attributes.clone(),
        })
        .map_err(|e| e.to_string())?;
    let queues = Arc::new(
        tokio::time::timeout(
            STARTUP_CALL_TIMEOUT,
            queues::Queues::create(aws_sdk_sqs::Client::new(&moto_sdk), &queue_specs),
        )
        .await
        .map_err(|_| format!("moto did not answer within {STARTUP_CALL_TIMEOUT:?}"))??,
    );
    let mut attributes = attributes;
    attributes.extend(queues.attributes());
    let bucket_specs = tpl
        .buckets(&template::Runtime {
            moto_endpoint: moto_endpoint.clone(),
            attributes: attributes.clone(),
        })
        .map_err(|e| e.to_string())?;
    let buckets = Arc::new(
        tokio::time::timeout(
            STARTUP_CALL_TIMEOUT,
            buckets::Buckets::create(
                &buckets::client(aws_sdk_s3::config::Builder::from(&moto_sdk)),
                &bucket_specs,
            ),
        )
        .await
        .map_err(|_| format!("moto did not answer within {STARTUP_CALL_TIMEOUT:?}"))??,
    );
    attributes.extend(buckets.attributes());
    let rt_values = template::Runtime {
        moto_endpoint,
        attributes,
    };
    let functions = tpl.functions(&rt_values).map_err(|e| e.to_string())?;
    let api_keys_table = tables
        .iter()
        .find(|t| t.logical_id == "ApiKeysTable")
        .map(|t| t.name.as_str());
    tokio::time::timeout(
        STARTUP_CALL_TIMEOUT,
        seed_dev_key(&client, api_keys_table, &cfg.dev_api_key),
    )
    .await
    .map_err(|_| format!("DynamoDB Local did not answer within {STARTUP_CALL_TIMEOUT:?}"))??;

    let logs = logs::LogWriter::start(cfg.echo_logs)?;
    let pool = Arc::new(runtime::Pool::new(
        &functions,
        &runtime::PoolOptions {
            bin_dir: cfg.bin_dir.clone(),
            max_instances: cfg.max_instances,
            base_env,
        },
        &logs,
        &cfg.log_dir,
    )?);
    let router = http_api::Router::new(&functions)?;
    let listener = tokio_listener(&cfg.api_listener, "API")?;
    let control_listener = tokio_listener(&cfg.control_listener, "control")?;
    let controls = Arc::new(control::Controls::for_functions(&functions));
    let schedules = Arc::new(schedules::Schedules::for_functions(
        &functions,
        chrono::Utc::now(),
    ));
    let api = Arc::new(http_api::Api {
        router,
        pool: Arc::clone(&pool),
        local_port: cfg.api_port,
        body_read_timeout: cfg.body_read_timeout,
    });
    let control_api = Arc::new(http_api::ControlApi {
        pool: Arc::clone(&pool),
        queues: Arc::clone(&queues),
        controls: Arc::clone(&controls),
        schedules: Arc::clone(&schedules),
        dynamodb: Arc::clone(&ddb),
        buckets: Arc::clone(&buckets),
    });
    let server = tokio::spawn(http_api::serve(
        listener,
        Arc::clone(&api),
        cfg.header_read_timeout,
    ));
    let control_server = tokio::spawn(http_api::serve(
        control_listener,
        control_api,
        cfg.header_read_timeout,
    ));
    if cfg.prewarm > 0 {
        pool.prewarm(cfg.prewarm);
    }
    let mut event_sources = esm::EventSources::start(
        &functions,
        Arc::clone(&pool),
        Arc::clone(&queues),
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        cfg.echo_logs,
        cfg.checkpoint_file.clone(),
        &controls,
    )?;
    event_sources.run_schedules(&schedules);

    print_banner(&cfg, &api, &pool, &functions, &queues, &buckets, t0);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "TWIN READY api=http://127.0.0.1:{} dynamodb={ddb_endpoint} moto=http://127.0.0.1:{} psp={psp_endpoint} control=http://127.0.0.1:{}",
            cfg.api_port, cfg.moto_port, cfg.control_port
        );
        let _ = out.flush();
    }

    let outcome = wait_for_shutdown(cfg.exit_on_stdin_eof, &ddb, &mut moto).await;
    match &outcome {
        Ok(reason) => eprintln!("twin: {reason}; shutting down"),
        Err(e) => eprintln!("twin: error: {e}; shutting down"),
    }
    server.abort();
    control_server.abort();
    event_sources.stop().await;
    pool.shutdown().await;
    tokio::join!(ddb.shutdown(), moto.stop(), psp.stop());
    logs.flush();
    eprintln!("twin: stopped");
    outcome.map(|_| ())
}

fn tokio_listener(listener: &std::net::TcpListener, what: &str) -> Result<tokio::net::TcpListener, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{what} listener: {e}"))?;
    tokio::net::TcpListener::from_std(
        listener
            .try_clone()
            .map_err(|e| format!("{what} listener: {e}"))?,
    )
    .map_err(|e| format!("{what} listener: {e}"))
}

/// Registers our webhook route with the sandbox PSP, as a user does once in Stripe's dashboard.
async fn register_webhook(psp: &str, secret_key: &str, url: &str) -> Result<(), String> {
    let form = format!(
        "url={}&enabled_events%5B%5D=%2A",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let response = reqwest::Client::new()
        .post(format!("{psp}/v1/webhook_endpoints"))
        .bearer_auth(secret_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .timeout(STARTUP_CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("registering the webhook with the sandbox PSP: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the sandbox PSP refused the webhook endpoint: {}",
            response.text().await.unwrap_or_default()
        ));
    }
    eprintln!("twin: webhook endpoint {url} registered with the sandbox PSP");
    Ok(())
}

async fn wait_for_shutdown(
    exit_on_stdin_eof: bool,
    ddb: &services::DynamoDb,
    moto: &mut Service,
) -> Result<&'static str, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    // Read stdin on a plain thread (tokio's stdin needs a feature this workspace doesn't use).
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if exit_on_stdin_eof {
        std::thread::Builder::new()
            .name("twin-stdin".into())
            .spawn(move || {
                use std::io::Read;
                let mut stdin = std::io::stdin().lock();
                let mut buf = [0u8; 1024];
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = eof_tx.send(());
            })
            .map_err(|e| format!("cannot watch stdin: {e}"))?;
    } else {
        drop(eof_tx);
    }
    let stdin_eof = async {
        if eof_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let moto_name = moto.name;
    let moto_log = moto.log_path.display().to_string();
    tokio::select! {
        _ = sigint.recv() => Ok("SIGINT"),
        _ = sigterm.recv() => Ok("SIGTERM"),
        _ = stdin_eof => Ok("stdin closed"),
        died = ddb.exited() => Err(format!("{died} unexpectedly")),
        st = moto.child.wait() => Err(format!("{moto_name} exited unexpectedly ({}); see {moto_log}",
            st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))),
    }
}

/// The documented default dev key (README); shown in full only when it is this one.
const DEFAULT_DEV_API_KEY: &str = "psys_test_devkey_4f2a9c7e1b5d";

/// A secret as the banner shows it: its kind prefix (`sk_test_`, `whsec_`, …) and its last four
/// characters, so two can be told apart without either being readable.
fn mask_secret(secret: &str) -> String {
    let prefix_len = [
        "sk_test_",
        "sk_live_",
        "rk_test_",
        "rk_live_",
        "whsec_",
        "psys_test_",
        "psys_live_",
    ]
    .iter()
    .find(|p| secret.starts_with(*p))
    .map_or(0, |p| p.len());
    let tail_len = 4.min(secret.len().saturating_sub(prefix_len) / 2);
    let tail: String = secret
        .chars()
        .rev()
        .take(tail_len)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}…{tail}", &secret[..prefix_len])
}

fn shown_dev_key(key: &str) -> String {
    if key == DEFAULT_DEV_API_KEY {
        format!("{key} (the documented default)")
    } else {
        mask_secret(key)
    }
}

fn print_banner(
    cfg: &Config,
    api: &http_api::Api,
    pool: &runtime::Pool,
    functions: &[template::FunctionSpec],
    queues: &queues::Queues,
    buckets: &buckets::Buckets,
    t0: Instant,
) {
    let data = match &cfg.data {
        DynamoData::InMemory => "in-memory".to_string(),
        DynamoData::Dir(d) => d.display().to_string(),
    };
    let mut b = String::new();
    b.push_str("\n┌─ twin: local AWS twin ready ");
    b.push_str(&format!("({:.1} s)\n", t0.elapsed().as_secs_f64()));
    let rows = [
        ("API_PORT", cfg.api_port.to_string()),
        ("DYNAMODB_PORT", cfg.dynamodb_port.to_string()),
        ("MOTO_PORT", cfg.moto_port.to_string()),
        ("TWIN_CONTROL_PORT", cfg.control_port.to_string()),
        ("DEV_API_KEY", shown_dev_key(&cfg.dev_api_key)),
        ("PSP_PORT", cfg.psp_port.to_string()),
        ("PSP_SECRET_KEY", mask_secret(&cfg.psp_secret_key)),
        ("PSP_WEBHOOK_SECRET", mask_secret(&cfg.psp_webhook_secret)),
        ("template", cfg.template.display().to_string()),
        ("bin dir", cfg.bin_dir.display().to_string()),
        ("dynamodb data", data),
        ("log dir", cfg.log_dir.display().to_string()),
        (
            "instances",
            format!(
                "max {} per function, {} prewarmed",
                cfg.max_instances, cfg.prewarm
            ),
        ),
    ];
    for (k, v) in rows {
        b.push_str(&format!("│ {k:<20} {v}\n"));
    }
    b.push_str("│ routes:\n");
    for r in api.router.routes() {
        b.push_str(&format!("│   {:<40} → {}\n", r.route_key, r.function));
    }
    if !queues.list.is_empty() {
        b.push_str("│ queues:\n");
        for q in &queues.list {
            let dlq = match &q.dead_letter {
                Some((arn, max)) => format!(
                    " (→ {} after {max} receives)",
                    template::queue_name_from_arn(arn).unwrap_or(arn)
                ),
                None => String::new(),
            };
            b.push_str(&format!("│   {:<20} {}{dlq}\n", q.name, q.url));
        }
    }
    if !buckets.list.is_empty() {
        b.push_str("│ buckets:\n");
        for bucket in &buckets.list {
            let versioning = match &bucket.versioning {
                Some(v) => format!(" (versioning {v})"),
                None => String::new(),
            };
            b.push_str(&format!(
                "│   {:<20} {}{versioning}\n",
                bucket.logical_id, bucket.name
            ));
            for n in &bucket.notifications {
                b.push_str(&format!("│   {:<20}   {n}\n", ""));
            }
        }
    }
    let mappings = esm::banner_lines(functions);
    if !mappings.is_empty() {
        b.push_str("│ event sources:\n");
        for m in &mappings {
            b.push_str(&format!("│   {m}\n"));
        }
    }
    let schedules = schedules::banner_lines(functions);
    if !schedules.is_empty() {
        b.push_str("│ schedules (UTC):\n");
        for s in &schedules {
            b.push_str(&format!("│   {s}\n"));
        }
    }
    if !queues.list.is_empty() {
        b.push_str(&format!(
            "│ queue counts:        http://127.0.0.1:{}/__twin/queues\n",
            cfg.control_port
        ));
    }
    if !mappings.is_empty() {
        b.push_str(&format!(
            "│ mapping switches:    POST http://127.0.0.1:{}/__twin/event-sources/<Function>/enable|disable|rewind|skip\n",
            cfg.control_port
        ));
    }
    if !schedules.is_empty() {
        b.push_str(&format!(
            "│ schedule switches:   GET http://127.0.0.1:{0}/__twin/schedules, \
             POST http://127.0.0.1:{0}/__twin/schedules/<Function>/<Event>/fire|pause|resume\n",
            cfg.control_port
        ));
    }
    b.push_str(&format!(
        "│ outage drill:        POST http://127.0.0.1:{}/__twin/dynamodb/stop|start (with --data-dir)\n",
        cfg.control_port
    ));
    b.push_str(&format!(
        "│ crash drill:         POST http://127.0.0.1:{}/__twin/functions/<Function>/kill\n",
        cfg.control_port
    ));
    for (id, path) in pool.missing_binaries() {
        b.push_str(&format!(
            "│ warning: {id}: {} does not exist (cargo build --bins); its invocations fail and \
             its event sources wait for it\n",
            path.display()
        ));
    }
    b.push_str("└─\n");
    eprint!("{b}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_shows_secrets_masked() {
        assert_eq!(mask_secret("sk_test_sandbox_51PsysLocalDev"), "sk_test_…lDev");
        assert_eq!(mask_secret("whsec_sandbox_localdev_7c1e9a"), "whsec_…1e9a");
        assert_eq!(mask_secret("s3cr3t"), "…r3t");
        assert_eq!(mask_secret("ab"), "…b");
        assert_eq!(mask_secret(""), "…");
        assert!(!mask_secret("psys_test_0123456789abcdef").contains("0123456789"));
        assert_eq!(
            shown_dev_key(DEFAULT_DEV_API_KEY),
            format!("{DEFAULT_DEV_API_KEY} (the documented default)")
        );
        assert_eq!(shown_dev_key("psys_test_mine_9f8e7d6c"), "psys_test_…7d6c");
    }
}
