//! Function log files, written by one dedicated thread so that no async worker ever blocks on
//! file I/O. With TWIN_ECHO_LOGS=1 every line is also echoed to the twin's stderr, prefixed
//! with the function's name.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

pub struct LogTarget {
    file: File,
    prefix: Vec<u8>,
}

enum Msg {
    Write(Arc<LogTarget>, Vec<u8>),
    Flush(mpsc::Sender<()>),
}

#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
}

impl LogWriter {
    pub fn start(echo: bool) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("twin-logs".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                for msg in rx {
                    match msg {
                        Msg::Write(target, line) => {
                            let _ = (&target.file).write_all(&line);
                            if echo {
                                let mut err = stderr.lock();
                                let _ = err.write_all(&target.prefix);
                                let _ = err.write_all(&line);
                            }
                        }
                        Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the log thread: {e}"))?;
        Ok(LogWriter { tx })
    }

    /// A log file (appended to) for one function.
    pub fn target(&self, path: &Path, name: &str) -> Result<Arc<LogTarget>, String> {
        let file = crate::services::open_log(path, name)?;
        Ok(Arc::new(LogTarget {
            file,
            prefix: format!("[{name}] ").into_bytes(),
        }))
    }

    pub fn write(&self, target: &Arc<LogTarget>, line: Vec<u8>) {
        let _ = self.tx.send(Msg::Write(Arc::clone(target), line));
    }

    /// Write a line of the twin's own (e.g. a timeout notice).
    pub fn line(&self, target: &Arc<LogTarget>, mut text: String) {
        text.push('\n');
        self.write(target, text.into_bytes());
    }

    /// Block until everything sent so far is written.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}
