//! Offset commits whose answers come back, and whose waits have a deadline.
//!
//! rust-rdkafka's asynchronous `commit` gives librdkafka no queue for the broker's answer,
//! and librdkafka then posts none (it does only for auto-commits or with an
//! `offset_commit_cb`, which rust-rdkafka does not set): `ConsumerContext::commit_callback`
//! never hears of a manual commit. Its synchronous `commit` waits as long as librdkafka's
//! request takes, past any deadline of ours. A commit sent here carries a queue of its own
//! (`rd_kafka_commit_queue`); its answer is read from that queue, at once or with a bounded
//! wait. The queue is reference-counted by librdkafka: dropping a [`PendingCommit`] before its
//! answer arrives is safe, the answer is then discarded. A pending commit must be dropped
//! before its consumer (it holds a handle on the consumer's client).

use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

/// One partition of a commit's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The partition's own error, if the broker rejected it.
    pub error: Option<RDKafkaErrorCode>,
}

/// The broker's answer to one commit.
#[derive(Debug, Clone)]
pub struct CommitAnswer {
    /// The request's error, if it failed as a whole.
    pub result: KafkaResult<()>,
    pub offsets: Vec<CommittedOffset>,
}

impl CommitAnswer {
    /// True if every partition was committed.
    pub fn committed(&self) -> bool {
        self.result.is_ok() && self.offsets.iter().all(|o| o.error.is_none())
    }
}

/// A commit sent, whose answer has not been read yet. It borrows its consumer: librdkafka's
/// queue points at the client without holding it, so it must not outlive it.
#[derive(Debug)]
pub struct PendingCommit<'c> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    consumer: PhantomData<&'c ()>,
}

// librdkafka queues are thread-safe (locked); the handle is only polled and destroyed.
unsafe impl Send for PendingCommit<'_> {}

impl<'c> PendingCommit<'c> {
    /// Sends `offsets` to the group coordinator without waiting.
    pub fn send<C: ConsumerContext>(
        consumer: &'c BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> KafkaResult<PendingCommit<'c>> {
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is a live consumer handle; the new queue is owned by the returned
        // value and destroyed in its `Drop`.
        let queue = NonNull::new(unsafe { rdsys::rd_kafka_queue_new(client) })
            .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::Fail))?;
        let pending = PendingCommit {
            queue,
            consumer: PhantomData,
        };
        // SAFETY: the list is copied by librdkafka before this returns; the queue is kept
        // alive by the reply's own reference until the answer is enqueued.
        let error = unsafe {
            rdsys::rd_kafka_commit_queue(
                client,
                offsets.ptr(),
                pending.queue.as_ptr(),
                None,
                std::ptr::null_mut(),
            )
        };
        match RDKafkaErrorCode::from(error) {
            RDKafkaErrorCode::NoError => Ok(pending),
            code => Err(KafkaError::ConsumerCommit(code)),
        }
    }

    /// The answer, if it arrives within `timeout`.
    pub fn answer(&self, timeout: Duration) -> Option<CommitAnswer> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: the queue is live (owned by self); the event is destroyed below.
            let event = unsafe { rdsys::rd_kafka_queue_poll(self.queue.as_ptr(), millis) };
            let event = NonNull::new(event)?;
            // SAFETY: `event` is a live event until destroyed at the end of this block.
            let answer = unsafe {
                let answer = (rdsys::rd_kafka_event_type(event.as_ptr())
                    == rdsys::RD_KAFKA_EVENT_OFFSET_COMMIT)
                    .then(|| read_answer(event.as_ptr()));
                rdsys::rd_kafka_event_destroy(event.as_ptr());
                answer
            };
            if answer.is_some() {
                return answer;
            }
        }
    }
}

impl Drop for PendingCommit<'_> {
    fn drop(&mut self) {
        // SAFETY: the queue was created by `send` and is destroyed once, here.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// Commits `offsets` and waits at most `timeout` for the answer (None: no answer in time; the
/// commit may still land).
pub fn commit_within<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<Option<CommitAnswer>> {
    Ok(PendingCommit::send(consumer, offsets)?.answer(timeout))
}

/// SAFETY: `event` must be a live OFFSET_COMMIT event.
unsafe fn read_answer(event: *mut rdsys::rd_kafka_event_t) -> CommitAnswer {
    let code = RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_event_error(event) });
    let result = match code {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::ConsumerCommit(code)),
    };
    let mut offsets = Vec::new();
    let list = unsafe { rdsys::rd_kafka_event_topic_partition_list(event) };
    if let Some(list) = unsafe { list.as_ref() } {
        let count = usize::try_from(list.cnt).unwrap_or(0);
        for index in 0..count {
            let element = unsafe { &*list.elems.add(index) };
            let topic = if element.topic.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(element.topic) }
                    .to_string_lossy()
                    .into_owned()
            };
            let error = match RDKafkaErrorCode::from(element.err) {
                RDKafkaErrorCode::NoError => None,
                code => Some(code),
            };
            offsets.push(CommittedOffset {
                topic,
                partition: element.partition,
                offset: element.offset,
                error,
            });
        }
    }
    CommitAnswer { result, offsets }
}
