//! Following one key, or every key under a prefix, as a value on a watch
//! channel: a fresh read (at revision R), then a watch from R + 1; a broken
//! or compacted watch reads again. While etcd cannot be read the last value
//! stays published. Each response that changes the keys publishes the
//! value made from them once. For the deploy state (`desired`); discovery
//! has its own follower, which also reports reachability.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::request::retrying;
use crate::error::RequestError;

/// The first pause between two failed reads; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The keys followed: key → (value, its mod revision).
pub(crate) type Keys = BTreeMap<String, (Vec<u8>, i64)>;

/// A value made from followed keys, kept current by a task that ends when
/// this is dropped. `None` until the first read.
pub struct Following<T> {
    receiver: watch::Receiver<Option<T>>,
    task: JoinHandle<()>,
}

impl<T> Following<T> {
    /// The value as it changes.
    pub fn receiver(&self) -> watch::Receiver<Option<T>> {
        self.receiver.clone()
    }
}

impl<T> Drop for Following<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows `key` (with `prefix`, every key under it), publishing
/// `make(keys)` after each change.
pub(crate) fn follow<T, F>(
    client: Client,
    key: String,
    prefix: bool,
    request_timeout: Duration,
    make: F,
) -> Following<T>
where
    T: PartialEq + Send + Sync + 'static,
    F: Fn(&Keys) -> T + Send + 'static,
{
    let (tx, receiver) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut keys = Keys::new();
        let mut pause = FIRST_PAUSE;
        loop {
            let revision = match read(&client, &key, prefix, request_timeout, &mut keys).await {
                Ok(revision) => revision,
                Err(e) => {
                    tracing::debug!(%key, error = %e, "could not read from the registry; retrying");
                    // A registry that is down gives no event to wait for.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            pause = FIRST_PAUSE;
            publish(&tx, make(&keys));
            let mut client = client.clone();
            let mut options = WatchOptions::new().with_start_revision(revision + 1);
            if prefix {
                options = options.with_prefix();
            }
            let Ok(mut stream) = client.watch(key.clone(), Some(options)).await else {
                continue;
            };
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled() || response.compact_revision() > 0 {
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let name = String::from_utf8_lossy(kv.key()).into_owned();
                    match event.event_type() {
                        EventType::Put => {
                            keys.insert(name, (kv.value().to_vec(), kv.mod_revision()));
                        }
                        EventType::Delete => {
                            keys.remove(&name);
                        }
                    }
                }
                publish(&tx, make(&keys));
            }
        }
    });
    Following { receiver, task }
}

fn publish<T: PartialEq>(tx: &watch::Sender<Option<T>>, value: T) {
    tx.send_if_modified(|current| {
        let changed = current.as_ref() != Some(&value);
        *current = Some(value);
        changed
    });
}

/// A fresh read into `keys`; the revision it was made at.
async fn read(
    client: &Client,
    key: &str,
    prefix: bool,
    request_timeout: Duration,
    keys: &mut Keys,
) -> Result<i64, RequestError> {
    let response = retrying(request_timeout, || {
        let mut client = client.clone();
        let options = prefix.then(|| GetOptions::new().with_prefix());
        async move { client.get(key, options).await }
    })
    .await?;
    keys.clear();
    for kv in response.kvs() {
        let name = String::from_utf8_lossy(kv.key()).into_owned();
        keys.insert(name, (kv.value().to_vec(), kv.mod_revision()));
    }
    Ok(response.header().map_or(0, |h| h.revision()))
}
