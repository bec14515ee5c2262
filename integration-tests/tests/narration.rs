//! `-v` narration of `run`: the parent (sender) and its child (receiver) write to the same
//! stderr, so each line must go out whole and say whose it is: `[send PID] call [idea]`.

use integration_tests::*;

/// Split `[side pid] rest` into its parts.
fn tagged(line: &str) -> Option<(&str, u32, &str)> {
    let inner = line.strip_prefix('[')?;
    let (tag, rest) = inner.split_once("] ")?;
    let (side, pid) = tag.split_once(' ')?;
    if side != "send" && side != "recv" {
        return None;
    }
    Some((side, pid.parse().ok()?, rest))
}

/// Run `argv` with `-vv -n 50` and check every stderr line: a side prefix with the right
/// pid, then exactly one narrated call (`call ... [idea]`), both sides heard from.
fn check_run(binary: &str, argv: &[&str], name: Option<&str>, min_recv_calls: usize) {
    let mut c = cmd(binary);
    c.args(argv).args(["-vv", "-n", "50", "--timeout", "20"]);
    if let Some(n) = name {
        c.args(["--name", n]);
    }
    let child = start(&mut c);
    let parent = child.id();
    let out = finish_within(child, WATCHDOG);
    assert_code(&out, 0);
    assert_verified_line(&out, 50);
    let err = stderr(&out);
    let mut recv_pid = None;
    let (mut sends, mut recvs) = (0, 0);
    for line in err.lines() {
        let (side, pid, rest) = tagged(line).unwrap_or_else(|| {
            panic!("{binary}: a line without a side prefix: {line:?}\nstderr:\n{err}")
        });
        match side {
            "send" => {
                assert_eq!(pid, parent, "{binary}: the sender is run itself: {line:?}");
                sends += 1;
            }
            _ => {
                assert_ne!(pid, parent, "{binary}: the receiver is the child: {line:?}");
                assert_eq!(
                    *recv_pid.get_or_insert(pid),
                    pid,
                    "{binary}: one receiver pid: {line:?}"
                );
                recvs += 1;
            }
        }
        // One call: `name(args) = result`, padded, then its idea in brackets at the end.
        // Another call or the tail of another line glued on shows as a second ` = `, a
        // bracket in the idea, or no idea at all.
        let (call, idea) = rest
            .rsplit_once(" [")
            .unwrap_or_else(|| panic!("{binary}: no [idea] on the line: {line:?}\nstderr:\n{err}"));
        let name_len = call
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '+' || c == ' '))
            .unwrap_or(0);
        assert!(
            idea.ends_with(']')
                && !idea[..idea.len() - 1].contains(['[', ']'])
                && !idea.contains(" = ")
                && call.matches(" = ").count() == 1
                && name_len > 0
                && call[name_len..].starts_with('('),
            "{binary}: not exactly one narrated call: {line:?}\nstderr:\n{err}"
        );
    }
    // -vv shows every per-message call: the sender makes at least one per message; a
    // pipe's reader takes many messages per read, a queue's one per receive.
    assert!(
        sends >= 50 && recvs >= min_recv_calls,
        "{binary}: {sends} sender and {recvs} receiver lines\n{err}"
    );
}

#[test]
fn mq_run_narrates_whole_lines_tagged_by_side_and_pid() {
    let name = unique("narr-mq");
    check_run("mq-pair", &["run"], Some(&name), 50);
    assert_no_leftovers(&name);
}

#[test]
fn pipe_run_narrates_whole_lines_tagged_by_side_and_pid() {
    check_run("pipe-pair", &["run"], None, 1);
}
