//! The choice, poll by poll, over an in-memory stream that gives its bytes
//! in the chunks a test chooses.

use std::collections::VecDeque;

use super::*;

struct Chunks(VecDeque<Vec<u8>>);

impl Read for Chunks {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let chunks = &mut self.get_mut().0;
        match chunks.pop_front() {
            Some(mut chunk) => {
                let rest = chunk.split_off(chunk.len().min(buf.remaining()));
                buf.put_slice(&chunk);
                if !rest.is_empty() {
                    chunks.push_front(rest);
                }
                Poll::Ready(Ok(()))
            }
            None => Poll::Pending,
        }
    }
}

fn decide(chunks: &[&[u8]]) -> Poll<(Protocol, Vec<u8>)> {
    let chunks = Chunks(chunks.iter().map(|c| c.to_vec()).collect());
    let mut read = ReadVersion::new(chunks);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match Pin::new(&mut read).poll(&mut cx) {
        Poll::Ready(Ok((protocol, mut rewind))) => {
            let mut again = Vec::new();
            // Bounded by the chunks left.
            for _ in 0..64 {
                let mut bytes = [0u8; 64];
                let mut buf = ReadBuf::new(&mut bytes);
                match Pin::new(&mut rewind).poll_read(&mut cx, buf.unfilled()) {
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                        again.extend_from_slice(buf.filled())
                    }
                    _ => break,
                }
            }
            Poll::Ready((protocol, again))
        }
        Poll::Ready(Err(error)) => panic!("{error}"),
        Poll::Pending => Poll::Pending,
    }
}

#[test]
fn http1_is_told_by_its_first_byte_and_read_again_whole() {
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    assert_eq!(
        decide(&[request]),
        Poll::Ready((Protocol::Http1, request.to_vec()))
    );
}

#[test]
fn http2_is_told_by_the_whole_preface_even_in_pieces() {
    let (a, b) = PREFACE.split_at(5);
    assert_eq!(decide(&[a]), Poll::Pending, "decided on 5 bytes");
    let (protocol, again) = match decide(&[a, b, b"settings"]) {
        Poll::Ready(done) => done,
        Poll::Pending => panic!("undecided after the preface"),
    };
    assert_eq!(protocol, Protocol::Http2);
    assert_eq!(again, [&PREFACE[..], b"settings"].concat());
}

#[test]
fn a_prefix_of_the_preface_that_then_differs_is_http1() {
    assert_eq!(
        decide(&[b"PRI * HTTP/1.1\r\n"]),
        Poll::Ready((Protocol::Http1, b"PRI * HTTP/1.1\r\n".to_vec()))
    );
}

#[test]
fn a_peer_that_closes_first_is_left_to_http1() {
    struct Closed;
    impl Read for Closed {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: ReadBufCursor<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    let mut read = ReadVersion::new(Closed);
    let waker = std::task::Waker::noop();
    let polled = Pin::new(&mut read).poll(&mut Context::from_waker(waker));
    assert!(matches!(polled, Poll::Ready(Ok((Protocol::Http1, _)))));
}
