//! `file` and `stdout` sinks: JSON lines in human form.

use std::io::Write;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;
use spillway_core::ack::AckStatus;
use spillway_core::component::{ComponentError, Sink, SinkContext, SinkInput};
use spillway_core::human::JsonLines;
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SinkConfig};

/// Config of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append JSON lines to; created with its directory if missing.
    pub path: PathBuf,
    /// `fsync` after every batch, so a record counts as delivered only once
    /// it is on disk. Turn off only when losing the last moments of output
    /// in a crash is acceptable.
    #[serde(default = "yes")]
    pub sync: bool,
}

fn yes() -> bool {
    true
}

impl SinkConfig for FileConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        if self.path.as_os_str().is_empty() {
            return vec![FieldIssue::new("path", "must not be empty")];
        }
        spillway_core::config::paths::output_file("path", &self.path).into_iter().collect()
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(TextSink {
            target: Target::File { path: cx.resolve(&self.path), sync: self.sync },
            encoder: JsonLines::new(input),
        }))
    }
}

spillway_core::register_sink! {
    config: FileConfig,
    name: "file",
    description: "Appends records to a file as JSON lines (addresses and times in human form).",
    example: "type: file\ninputs: [flows]\npath: ./flows.jsonl\n",
}

/// Config of the `stdout` sink (it has no options).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl SinkConfig for StdoutConfig {
    fn build(&self, _cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(TextSink { target: Target::Stdout, encoder: JsonLines::new(input) }))
    }
}

spillway_core::register_sink! {
    config: StdoutConfig,
    name: "stdout",
    description: "Prints records to standard output as JSON lines; for debugging.",
    example: "type: stdout\ninputs: [flows]\n",
}

enum Target {
    File { path: PathBuf, sync: bool },
    Stdout,
}

struct TextSink {
    target: Target,
    encoder: JsonLines,
}

#[async_trait]
impl Sink for TextSink {
    async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
        let (mut writer, sync): (Box<dyn Write + Send>, Option<std::fs::File>) = match &self.target {
            Target::File { path, sync } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ComponentError::new(format!("cannot create directory {}: {e}", dir.display()))
                    })?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| ComponentError::new(format!("cannot open {}: {e}", path.display())))?;
                let handle = if *sync {
                    Some(f.try_clone().map_err(|e| ComponentError::new(e.to_string()))?)
                } else {
                    None
                };
                (Box::new(f), handle)
            }
            Target::Stdout => (Box::new(std::io::stdout()), None),
        };
        let mut buf = Vec::with_capacity(1 << 20);
        while let Some(batch) = input.recv().await {
            buf.clear();
            self.encoder.write_batch(&batch.data, &mut buf);
            let rows = batch.rows() as u64;
            // Blocking writes are acceptable here: these sinks are for
            // debugging and small outputs, and a write is one syscall per batch.
            let written = writer
                .write_all(&buf)
                .and_then(|_| writer.flush())
                .and_then(|_| sync.as_ref().map_or(Ok(()), |f| f.sync_data()));
            match written {
                Ok(()) => {
                    cx.events.delivered(rows);
                    batch.acks.settle(AckStatus::Delivered);
                }
                Err(e) => {
                    cx.events.dropped(DropReason::SinkError, rows, &format_args!("write failed: {e}"));
                    batch.acks.settle(AckStatus::Rejected);
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // Nobody reads our output any more: count the rest as
                        // dropped rather than spin on a closed pipe.
                        while let Some(rest) = input.recv().await {
                            cx.events.dropped(
                                DropReason::SinkError,
                                rest.rows() as u64,
                                &"nobody reads the output any more",
                            );
                            rest.acks.settle(AckStatus::Rejected);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
