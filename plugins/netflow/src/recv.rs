//! Batched UDP receive: `recvmmsg(2)` into buffers owned by one worker.
//!
//! The only module of the crate with `unsafe` code: the syscall, the
//! reading of the socket addresses the kernel wrote, and one socket option
//! the socket crate does not offer. Each block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use spillway_core::schema::Addr;

/// Sets `s`'s receive buffer to `bytes` past `net.core.rmem_max`
/// (`SO_RCVBUFFORCE`, as pmacct does), which the kernel allows a process
/// with `CAP_NET_ADMIN`; whether it did. The default cap (4 MiB on this
/// machine, 208 KiB on many) holds a few milliseconds of a busy exporter
/// fleet's datagrams: the time a receive thread may wait for a core.
pub(crate) fn force_recv_buffer(s: &impl std::os::fd::AsRawFd, bytes: usize) -> bool {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `s` is an open socket, and the option's value is a c_int of
    // the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Datagrams per call.
pub const VLEN: usize = 64;
/// Bytes per datagram buffer (the largest UDP payload).
pub const BUF: usize = 65536;
/// How long [`MmsgBufs::recv`] lets datagrams gather after a call that
/// found only a few (fewer than `VLEN / 2`): waking for every datagram or
/// two cost the collector more than its decoding at a few million records
/// per second (each sleep and wake-up is a context switch). A 4 MiB
/// receive buffer holds about 1,800 full-size datagrams: a millisecond of
/// traffic even at 10 Gbit/s line rate into one socket is under half of
/// that, and at 5 M records/s it is a tenth. 1 ms is also all the latency
/// this adds (300 µs left the workers 10 % busier at 3.5 M records/s).
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Buffers for one `recvmmsg` call. Boxed so that the pointers inside the
/// headers stay valid while the call runs.
pub struct MmsgBufs {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams the last call received.
    last: usize,
}

impl MmsgBufs {
    pub fn new() -> Box<Self> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Box::new(Self {
            data: vec![0u8; VLEN * BUF],
            addrs: vec![zero_addr; VLEN],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; VLEN],
            hdrs: vec![zero_hdr; VLEN],
            last: 0,
        })
    }

    /// Receives up to `VLEN` datagrams, waiting for the first; returns how
    /// many. After a call that found only a few, first sleeps [`GATHER`]
    /// so that the next finds more.
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        if (1..VLEN / 2).contains(&self.last) {
            std::thread::sleep(GATHER);
        }
        self.recv_flags(fd, libc::MSG_WAITFORONE)
    }

    /// As [`MmsgBufs::recv`], without waiting: `WouldBlock` when nothing is
    /// queued.
    pub fn recv_nowait(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.recv_flags(fd, libc::MSG_WAITFORONE | libc::MSG_DONTWAIT)
    }

    fn recv_flags(&mut self, fd: RawFd, flags: libc::c_int) -> std::io::Result<usize> {
        for i in 0..VLEN {
            self.iovs[i] = libc::iovec { iov_base: self.data[i * BUF..].as_mut_ptr().cast(), iov_len: BUF };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`, which
        // outlive the call; lengths match the buffers' sizes.
        let n = unsafe {
            libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), VLEN as libc::c_uint, flags, std::ptr::null_mut())
        };
        self.last = n.max(0) as usize;
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Datagram `i`: its payload, and its sender's address and port.
    pub fn datagram(&self, i: usize) -> (&[u8], Option<(Addr, u16)>) {
        let len = (self.hdrs[i].msg_len as usize).min(BUF);
        let data = &self.data[i * BUF..i * BUF + len];
        let a = &self.addrs[i];
        let src = match a.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
                let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some((Addr::v4(u32::from_be(v4.sin_addr.s_addr)), u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some((Addr(v6.sin6_addr.s6_addr), u16::from_be(v6.sin6_port)))
            }
            _ => None,
        };
        (data, src)
    }
}
