//! The consumer's half of the lecture: find the producer's segment (under the API given,
//! or under every API), attach to it (`shm_open` + `mmap`, `shmget` + `shmat`, or
//! `open` + `mmap`), check its header, and receive from the ring. Everything the
//! producer chose (sync kind, sizes, mode, workload) is learnt from the segment and the
//! sender's hello.

use ipc_common::args::CommonArgs;
use ipc_common::narrate;
use ipc_common::report::Report;
use ipc_common::shm::layout::{Api, Checked, SyncKind};
use ipc_common::shm::pair::{describe, describe_pool, naming_flags, spec, Place};
use ipc_common::shm::pool::{attach_pool, PoolLink};
use ipc_common::shm::ring::{Side, SyncQueues};
use ipc_common::shm::{attach, mark_attached, probe, Found, Segment, Spec};
use ipc_common::{workload, Cause, Error, Kind, Result};
use std::time::{Duration, Instant};

/// How long the consumer waits silently before saying it waits for a producer.
const GRACE: Duration = Duration::from_millis(200);

/// The consumer's flags: only what names the segment. The producer's choices are
/// accepted (hidden) only to be checked against what the segment says.
#[derive(clap::Args, Clone, Debug)]
#[command(
    mut_arg("api", |a| a.help("How the segment was made [default: whichever the producer published]")),
    mut_arg("file", |a| a.help("--api mmap: the mapped file [default: /tmp/NAME.mmap]"))
)]
pub struct ConsumerArgs {
    #[command(flatten)]
    pub place: Place,

    /// Checked against the segment; the producer chooses
    #[arg(long, value_enum, hide = true)]
    pub sync: Option<SyncKind>,

    /// Checked against the segment; the producer chooses
    #[arg(long, value_name = "BYTES", value_parser = ipc_common::args::parse_size, hide = true)]
    pub segment_size: Option<usize>,
}

/// Find the producer's segment, attach to it and receive the workload.
pub fn consume(args: &ConsumerArgs, common: &CommonArgs) -> Result<Report> {
    // --file names a mapped file: only with --api mmap, checked before any waiting.
    args.place.spec(common)?;
    let start = Instant::now();
    let peer = format!("shm-producer{}", naming_flags(&args.place, common));
    let spec = locate(args, common, &peer)?;
    let left = common.timeout.saturating_sub(start.elapsed());
    let (seg, checked) = attach(&spec, left.max(Duration::from_millis(1)), &peer)?;
    // Refused here, the segment's drop gives the alive mutex back, so the next
    // consumer, with the right flags, can attach.
    let queues = join(&spec, args, &seg, &checked)?;
    if checked.pool > 0 {
        let pool = attach_pool(&spec, seg, &checked, common.timeout, &peer)?;
        let mut link = PoolLink::new(&pool, common.timeout);
        return workload::receive(&mut link, common, &describe_pool(&spec, &pool));
    }
    let mut link = seg.ring_link(Side::Consumer, &checked, common.timeout, queues);
    workload::receive(&mut link, common, &describe(&spec, &checked, seg.map.len()))
}

/// Which segment to attach to. With --api: that one (refused at once if only another
/// API has a live producer of this name). Without: whichever API has something under
/// the name; if several do, the one whose producer lives; if several producers live,
/// the user must choose. Nothing anywhere yet: wait, up to --timeout.
fn locate(args: &ConsumerArgs, common: &CommonArgs, peer: &str) -> Result<Spec> {
    let specs: Vec<Spec> = <Api as clap::ValueEnum>::value_variants()
        .iter()
        .map(|&api| {
            spec(
                api,
                args.place.file.as_ref().filter(|_| api == Api::Mmap),
                common,
            )
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let mut said = false;
    loop {
        let looks: Vec<(&Spec, Found)> = specs.iter().map(|s| (s, probe(s))).collect();
        if let Some(found) = choose(args.place.api, &looks)? {
            return Ok(found.clone());
        }
        if start.elapsed() >= common.timeout {
            let api = args.place.api.unwrap_or(Api::Posix);
            let spec = specs.iter().find(|s| s.api == api).expect("every api");
            let w = ipc_common::wait::Waiting::new(spec.object(), peer.to_string(), common.timeout);
            return Err(w.gave_up("no producer created it"));
        }
        if !said && start.elapsed() >= GRACE {
            let what = match args.place.api {
                Some(api) => specs
                    .iter()
                    .find(|s| s.api == api)
                    .expect("every api")
                    .object(),
                None => format!("{} under any API", specs[0].name),
            };
            narrate::note(format_args!(
                "waiting up to {:.1} s for a producer to create {what} (start `{peer}` in another terminal)",
                common.timeout.as_secs_f64(),
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One decision from one look under every API; `Ok(None)`: look again.
fn choose<'a>(want: Option<Api>, looks: &[(&'a Spec, Found)]) -> Result<Option<&'a Spec>> {
    let with = |f: fn(Found) -> bool| -> Vec<&'a Spec> {
        looks
            .iter()
            .filter(|(_, x)| f(*x))
            .map(|(s, _)| *s)
            .collect()
    };
    let present = with(|f| f != Found::Absent);
    let live = with(|f| f == Found::Live);
    if let Some(want) = want {
        let mine = looks.iter().find(|(s, _)| s.api == want);
        return match (mine, live.first()) {
            (Some((s, Found::Absent)), Some(other)) => Err(api_mismatch(s, other)),
            (Some((_, Found::Absent)), None) => Ok(None),
            (Some((s, _)), _) => Ok(Some(*s)),
            (None, _) => Ok(None),
        };
    }
    match (present.as_slice(), live.as_slice()) {
        ([one], _) | (_, [one]) => Ok(Some(*one)),
        (_, [_, _, ..]) => Err(several_producers(&live)),
        _ => Ok(None),
    }
}

fn api_mismatch(mine: &Spec, other: &Spec) -> Error {
    let api = other.api.as_str();
    Error::new(
        Kind::Usage,
        mine.object(),
        format!(
            "does not exist, but a live producer published {} (--api {api})",
            other.object()
        ),
        format!("give the consumer --api {api}, or no --api (it finds the producer's)"),
    )
    .because(Cause::Mismatch)
}

fn several_producers(live: &[&Spec]) -> Error {
    let objects: Vec<String> = live.iter().map(|s| s.object()).collect();
    let apis: Vec<&str> = live.iter().map(|s| s.api.as_str()).collect();
    Error::new(
        Kind::Usage,
        format!("shared memory {}", live[0].name),
        format!(
            "has live producers under {} APIs: {}",
            live.len(),
            objects.join("; ")
        ),
        format!("choose one with --api ({})", apis.join(" or ")),
    )
    .because(Cause::Mismatch)
}

/// Check the flags against the segment; in ring mode open the sync queues and mark the
/// segment attached (pool mode attaches its members first).
fn join(
    spec: &Spec,
    args: &ConsumerArgs,
    seg: &Segment,
    checked: &Checked,
) -> Result<Option<SyncQueues>> {
    check_choices(args, seg, checked)?;
    if checked.pool > 0 {
        return Ok(None);
    }
    let queues = match checked.sync {
        SyncKind::Mq => Some(SyncQueues::open(&spec.name, checked.rings, Side::Consumer)?),
        _ => None,
    };
    mark_attached(seg)?;
    Ok(queues)
}

/// The producer's choices, if the consumer was given them too, must match the segment.
fn check_choices(args: &ConsumerArgs, seg: &Segment, checked: &Checked) -> Result<()> {
    let differ = |what: String, remedy: &str| {
        Err(Error::new(Kind::Usage, &seg.object, what, remedy).because(Cause::Mismatch))
    };
    if let Some(s) = args.sync.filter(|&s| s != checked.sync) {
        return differ(
            format!(
                "uses --sync {}, but the consumer was given --sync {}",
                checked.sync.as_str(),
                s.as_str()
            ),
            "the producer chooses; give --sync to the producer only, or the same to both",
        );
    }
    if let Some(size) = args.segment_size.filter(|&n| n != seg.map.len()) {
        return differ(
            format!(
                "has {} bytes, but the consumer was given --segment-size {size}",
                seg.map.len()
            ),
            "the producer chooses; give --segment-size to the producer only",
        );
    }
    Ok(())
}
