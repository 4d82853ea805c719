//! End-offset samples of the consent partitions, taken on a thread of their own: what the
//! table must have applied before a batch of events read after them is judged.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::KafkaContext;

/// End offsets of the consent partitions at one moment, and how many partitions the topic
/// had then (`None` when not asked).
#[derive(Debug, Clone, Default)]
pub struct EndOffsets {
    pub(crate) ends: Vec<(i32, i64)>,
    pub(crate) partition_count: Option<usize>,
    /// The privacy topic's, sampled at the same moment, when it is configured.
    pub(crate) privacy: Option<Box<EndOffsets>>,
}

/// An end-offset sample asked for (see [`ConsentFollower::request_sample`]): the request is
/// sent after the ask, on the sampling thread.
pub struct PendingSample {
    state: SampleState,
    /// The privacy topic's sample, asked for at the same moment.
    privacy: Option<Box<PendingSample>>,
}

enum SampleState {
    Waiting(mpsc::Receiver<KafkaResult<EndOffsets>>),
    Taken(EndOffsets),
}

impl PendingSample {
    pub(crate) fn taken(ends: EndOffsets) -> PendingSample {
        PendingSample {
            state: SampleState::Taken(ends),
            privacy: None,
        }
    }

    /// This sample together with the privacy topic's: answered when both are.
    pub(crate) fn with_privacy(mut self, privacy: PendingSample) -> PendingSample {
        self.privacy = Some(Box::new(privacy));
        self
    }

    /// The sampled end offsets once the answer is in, waiting at most `timeout` for it;
    /// `Ok(None)` if it is not in yet. After an error the sample is spent: ask for a new one.
    pub fn wait(&mut self, timeout: Duration) -> KafkaResult<Option<&EndOffsets>> {
        let started = std::time::Instant::now();
        if !self.wait_own(timeout)? {
            return Ok(None);
        }
        if let Some(privacy) = &mut self.privacy {
            let left = timeout.saturating_sub(started.elapsed());
            let Some(ends) = privacy.wait(left)?.cloned() else {
                return Ok(None);
            };
            if let SampleState::Taken(own) = &mut self.state {
                own.privacy = Some(Box::new(ends));
            }
            self.privacy = None;
        }
        match &self.state {
            SampleState::Taken(ends) => Ok(Some(ends)),
            SampleState::Waiting(_) => Ok(None),
        }
    }

    /// Whether this topic's own answer is in.
    fn wait_own(&mut self, timeout: Duration) -> KafkaResult<bool> {
        if let SampleState::Waiting(answer) = &self.state {
            let ends = match answer.recv_timeout(timeout) {
                Ok(result) => result?,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(false),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(KafkaError::Canceled);
                }
            };
            self.state = SampleState::Taken(ends);
        }
        Ok(true)
    }
}

/// One sample to take: which partitions, how long to wait for the cluster, where to answer.
struct SampleRequest {
    partitions: Vec<i32>,
    /// Also sample every partition from this one on that the topic has now (partitions added
    /// since the follower last looked); `None` in co-partitioned mode.
    from_new: Option<i32>,
    timeout: Duration,
    answer: mpsc::SyncSender<KafkaResult<EndOffsets>>,
}

/// Takes end-offset samples on a thread of its own, with a client of its own: on the
/// follower's connection a request would queue behind its long-polling fetch (up to
/// `fetch.wait.max.ms`), and on the pipeline thread the round trip for one batch could not
/// overlap with judging the batch before it.
pub(crate) struct Sampler {
    requests: Option<mpsc::Sender<SampleRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(
        client: BaseConsumer<KafkaContext>,
        topic: String,
    ) -> std::io::Result<Sampler> {
        let (requests, incoming) = mpsc::channel::<SampleRequest>();
        let thread = std::thread::Builder::new()
            .name("consent-sampler".to_owned())
            .spawn(move || {
                while let Ok(first) = incoming.recv() {
                    // One sample answers every ask made before it is sent: under load the asks
                    // can come faster than round trips, and answering them one by one would
                    // queue each behind all the others.
                    let mut asks = vec![first];
                    asks.extend(incoming.try_iter());
                    let mut partitions: Vec<i32> = asks
                        .iter()
                        .flat_map(|ask| ask.partitions.iter().copied())
                        .collect();
                    partitions.sort_unstable();
                    partitions.dedup();
                    let from_new = asks.iter().filter_map(|ask| ask.from_new).min();
                    let timeout = asks.iter().map(|ask| ask.timeout).min().unwrap_or_default();
                    let ends = sample_ends(&client, &topic, &partitions, from_new, timeout);
                    for ask in asks {
                        // The asker may have moved on (a rewind dropped its batch).
                        let _ = ask.answer.send(ends.clone());
                    }
                }
            })?;
        Ok(Sampler {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    pub(crate) fn request(
        &self,
        partitions: Vec<i32>,
        from_new: Option<i32>,
        timeout: Duration,
    ) -> PendingSample {
        let (answer, receiver) = mpsc::sync_channel(1);
        let request = SampleRequest {
            partitions,
            from_new,
            timeout,
            answer,
        };
        // If the thread is gone the receiver reports it as disconnected.
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
        PendingSample {
            state: SampleState::Waiting(receiver),
            privacy: None,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the sample it is taking, if any.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks the cluster for the topic's partition count now, then for the end offsets of
/// `partitions` and of any partition from `from_new` on (for `read_committed`, the last
/// stable offsets). The count comes first: a partition added before the sample was asked
/// for is in it, so a consent record written there is waited for like any other.
fn sample_ends(
    client: &BaseConsumer<KafkaContext>,
    topic: &str,
    partitions: &[i32],
    from_new: Option<i32>,
    timeout: Duration,
) -> KafkaResult<EndOffsets> {
    let partition_count = client
        .fetch_metadata(Some(topic), timeout)?
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len());
    let added = match (from_new, partition_count) {
        (Some(from), Some(count)) => from..i32::try_from(count).unwrap_or(i32::MAX),
        _ => 0..0,
    };
    let mut query = TopicPartitionList::with_capacity(partitions.len() + added.len());
    for partition in partitions
        .iter()
        .copied()
        .chain(added.filter(|p| !partitions.contains(p)))
    {
        query.add_partition_offset(topic, partition, Offset::End)?;
    }
    let answer = client.offsets_for_times(query, timeout)?;
    let mut ends = Vec::with_capacity(partitions.len());
    for element in answer.elements() {
        if let Some(error) = element.error().err() {
            return Err(error);
        }
        match element.offset() {
            Offset::Offset(end) => ends.push((element.partition(), end)),
            other => {
                tracing::debug!(?other, "no end offset for a consent partition");
                return Err(KafkaError::OffsetFetch(
                    rdkafka::types::RDKafkaErrorCode::OffsetNotAvailable,
                ));
            }
        }
    }
    Ok(EndOffsets {
        ends,
        partition_count,
        privacy: None,
    })
}
