//! Buffers given back by connections going idle, lent to the next ones that need one.
//!
//! A keep-alive connection releases its buffers between requests (so that thousands of idle
//! connections hold no memory), and the next request would allocate them again: with 32 busy
//! clients that was two allocations, two frees and a 16 KiB memset per request. The pool keeps
//! up to [`POOLED`] buffers of each kind on the reactor thread (it is single-threaded, so
//! thread-local), which bounds what it holds to a few MiB whatever the number of connections.

use std::cell::RefCell;

/// Most buffers of each kind kept.
pub const POOLED: usize = 64;
/// Input buffers kept are this long (their bytes initialized once, when first allocated).
pub const INPUT_LEN: usize = 16 * 1024;
/// Output buffers with more capacity than this are not kept.
const OUTPUT_KEPT: usize = 64 * 1024;

/// Length of the scratch buffer [`with_scratch`] lends.
pub const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    static INPUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Runs `f` with a [`SCRATCH_LEN`]-byte buffer whose bytes were initialized once for the
/// thread (a stack array would be zeroed at every call). Should `f` ask for it again, the
/// inner call gets a fresh buffer.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; SCRATCH_LEN]),
    })
}

/// An input buffer of [`INPUT_LEN`] initialized bytes.
pub fn take_input() -> Vec<u8> {
    INPUT
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; INPUT_LEN])
}

/// Gives an input buffer back (kept only at its standard size).
pub fn give_input(buf: Vec<u8>) {
    if buf.len() == INPUT_LEN && buf.capacity() <= 2 * INPUT_LEN {
        INPUT.with(|p| keep(&mut p.borrow_mut(), buf));
    }
}

/// An empty output buffer, with the capacity a former user gave it when there is one.
pub fn take_output() -> Vec<u8> {
    OUTPUT.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Gives an output buffer back (its content is dropped; kept unless very large).
pub fn give_output(mut buf: Vec<u8>) {
    if buf.capacity() > 0 && buf.capacity() <= OUTPUT_KEPT {
        buf.clear();
        OUTPUT.with(|p| keep(&mut p.borrow_mut(), buf));
    }
}

fn keep(pool: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if pool.len() < POOLED {
        pool.push(buf);
    }
}

/// Buffers pooled now (input, output).
#[cfg(test)]
fn pooled() -> (usize, usize) {
    (
        INPUT.with(|p| p.borrow().len()),
        OUTPUT.with(|p| p.borrow().len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_the_pool_stays_bounded() {
        let inputs: Vec<Vec<u8>> = (0..POOLED + 10).map(|_| take_input()).collect();
        let last = inputs[POOLED - 1].as_ptr();
        for b in inputs {
            give_input(b);
        }
        assert_eq!(pooled().0, POOLED, "at most POOLED kept");
        let again = take_input();
        assert_eq!(again.len(), INPUT_LEN);
        assert_eq!(again.as_ptr(), last, "the last one kept is lent first");
        give_input(vec![0; 3 * INPUT_LEN]);
        assert_eq!(pooled().0, POOLED - 1, "an odd-sized buffer is not kept");
        let mut out = take_output();
        out.extend_from_slice(&[1; 1000]);
        give_output(out);
        let out = take_output();
        assert!(out.is_empty() && out.capacity() >= 1000, "reused, emptied");
        give_output(vec![0; OUTPUT_KEPT + 1]);
        assert_eq!(pooled().1, 0, "a very large one is not kept");
    }
}
