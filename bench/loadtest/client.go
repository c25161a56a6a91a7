package loadtest

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The generator's client is one loop in one goroutine. It sleeps until the
// next call is due, writes that call's pre-serialized request on
// an idle keep-alive connection, and reads whatever answers came meanwhile.
// A call costs a write, a read and one wake-up of the thread: no goroutine,
// channel, timer or thread hand-off. On this VM a wake-up costs more than
// everything else together, so the loop does not wake for answers while
// calls remain to be sent: each answer's time is the kernel's receive
// timestamp of its last bytes (SO_TIMESTAMPNS), not the time the loop got
// round to reading it. Once the schedule is done, or if the kernel gives no
// timestamps, the loop waits on epoll and wakes for every answer. Linux
// only, as the rest of the package.

// conn is one keep-alive connection, with at most one call in flight.
type conn struct {
	fd      int
	gen     int32 // tells this connection's epoll events from an earlier one's on the same fd
	call    int   // the call in flight, or -1
	dialing bool
	closed  bool
	served  int    // answers read: a reused connection may have been closed by the server meanwhile
	out     []byte // request bytes not written yet
	in      []byte // an answer that came in pieces, so far
}

// run is one Run's state; the connections belong to the Generator.
type run struct {
	g       *Generator
	dst     *target
	reqs    [][]byte
	rate    float64
	n       int
	start   time.Time
	results []outcome
	sent    []bool
	// callConn is the connection of each call in flight (nil otherwise).
	// Calls go out in index order and share one timeout, so their
	// deadlines come in index order too.
	callConn    []*conn
	inFlight    int
	maxInFlight int
	connErrors  int
	lastDone    time.Duration
	reasons     map[string]string // interned: one string per reason, not per answer
	// stamped: answers carry the kernel's receive time, so the loop need
	// not wake up for them while it has calls to send.
	stamped bool
	// clock is the time since start at the last wake-up and wallBase the
	// wall clock's reading at start as of then: receive timestamps are on
	// the wall clock, latencies on the monotonic one.
	clock    time.Duration
	wallBase int64
	msg      syscall.Msghdr
	iov      syscall.Iovec
	oob      [16]uint64 // control messages, 8-byte aligned
	rbuf     [64 << 10]byte
	evs      [256]syscall.EpollEvent
}

const (
	epollET = 1 << 31
	// epoll_pwait2 (Linux 5.11) takes a timespec: epoll_wait's
	// milliseconds are too coarse for a schedule with calls 250 µs apart.
	sysEpollPwait2 = 441
	// pollEvery bounds each wait, so cancellation and timeouts are seen.
	pollEvery = 20 * time.Millisecond
)

var noPwait2 atomic.Bool

func (r *run) due(i int) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / r.rate)
}

func (r *run) now() time.Duration { return time.Since(r.start) }

// tick reads both clocks at once.
func (r *run) tick() time.Duration {
	t := time.Now()
	r.clock = t.Sub(r.start)
	r.wallBase = t.UnixNano() - int64(r.clock)
	return r.clock
}

func (r *run) loop(ctx context.Context) {
	// The loop sleeps in the kernel, not on Go's timers, which wake about
	// a millisecond late on this VM: every latency would include that.
	w := waiter{raw: runtime.GOMAXPROCS(0) > 1}
	g := r.g
	if g.dst != r.dst.key {
		g.closeAll()
		g.dst = r.dst.key
	}
	if g.ep < 0 {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			for i := range r.n {
				r.sent[i] = true
				r.results[i].failure = "transport: epoll"
			}
			return
		}
		g.ep = ep
	}
	evs := r.evs[:]
	next, oldest := 0, 0
	for {
		if ctx.Err() != nil {
			// As net/http did: calls not sent yet count as not sent, calls
			// in flight fail.
			for i := oldest; i < next; i++ {
				if c := r.callConn[i]; c != nil {
					r.close(c)
					r.finish(i, outcome{failure: "transport: canceled"})
				}
			}
			return
		}
		now := r.tick()
		for next < r.n && r.due(next) <= now {
			r.dispatch(next, now)
			next++
			now = r.now()
		}
		for oldest < next {
			c := r.callConn[oldest]
			if c != nil && r.deadline(oldest) > now {
				break
			}
			if c != nil {
				r.connErrors++
				r.close(c)
				r.finish(oldest, outcome{failure: "transport: timeout"})
			}
			oldest++
		}
		if next == r.n && r.inFlight == 0 {
			return
		}
		wait := pollEvery
		if next < r.n {
			wait = min(wait, r.due(next)-now)
		}
		if oldest < next {
			wait = min(wait, r.deadline(oldest)-now)
		}
		var k int
		if r.stamped && next < r.n {
			w.sleep(wait)
			k = w.epollWait(g.ep, evs, 0)
		} else {
			k = w.epollWait(g.ep, evs, wait)
		}
		r.tick()
		for _, ev := range evs[:k] {
			if int(ev.Fd) < len(g.conns) {
				if c := g.conns[ev.Fd]; c != nil && c.gen == ev.Pad {
					r.event(c, ev.Events)
				}
			}
		}
	}
}

func (r *run) deadline(i int) time.Duration {
	return r.due(i) + r.results[i].lag + r.g.timeout
}

// dispatch sends call i, due now or a little earlier.
func (r *run) dispatch(i int, now time.Duration) {
	r.results[i].lag = now - r.due(i)
	if r.inFlight >= r.g.maxInFlight {
		return // overflow: the system is far behind
	}
	r.sent[i] = true
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	c := r.idleConn()
	if c == nil {
		var err error
		if c, err = r.dial(); err != nil {
			r.connErrors++
			r.finish(i, outcome{failure: "transport: connect"})
			return
		}
	}
	r.send(c, i)
}

func (r *run) idleConn() *conn {
	g := r.g
	for len(g.idle) > 0 {
		c := g.idle[len(g.idle)-1]
		g.idle = g.idle[:len(g.idle)-1]
		if !c.closed {
			return c
		}
	}
	return nil
}

// dial starts a non-blocking connect: the loop never waits for one.
func (r *run) dial() (*conn, error) {
	g := r.g
	family := syscall.AF_INET
	if _, ok := r.dst.sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) != nil {
		r.stamped = false
	}
	err = syscall.Connect(fd, r.dst.sa)
	if err == syscall.EINTR {
		// An interrupted connect goes on in the background.
		err = syscall.EINPROGRESS
	}
	if err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return nil, err
	}
	for fd >= len(g.conns) {
		g.conns = append(g.conns, nil)
	}
	g.gen++
	gen := g.gen
	c := &conn{fd: fd, gen: gen, call: -1, dialing: err != nil}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: int32(fd), Pad: gen}
	if err := syscall.EpollCtl(g.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	g.conns[fd] = c
	return c, nil
}

func (r *run) send(c *conn, i int) {
	c.call = i
	r.callConn[i] = c
	c.out = r.reqs[i%len(r.reqs)]
	// Even while dialing: a loopback connect is done by the time connect
	// returns, and the loop may not be back to see it for a while.
	r.flush(c)
}

// flush writes what is left of the request; the rest, if the socket is
// full, goes when epoll says it is writable.
func (r *run) flush(c *conn) {
	for len(c.out) > 0 {
		n, err := rawIO(syscall.SYS_WRITE, c.fd, c.out)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return
		case err != 0 && c.dialing:
			r.broken(c, "transport: connect", false)
			return
		case err != 0:
			r.broken(c, "transport: "+errKind(err), true)
			return
		}
		c.dialing = false
		c.out = c.out[n:]
	}
}

func (r *run) event(c *conn, events uint32) {
	if c.dialing {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if errno, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || errno != 0 {
			r.broken(c, "transport: connect", false)
			return
		}
		c.dialing = false
	}
	if len(c.out) > 0 {
		r.flush(c)
	}
	if !c.closed && events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		r.readable(c)
	}
}

// readable reads until the answer is whole or the socket has nothing more
// for now (epoll is edge-triggered: what is left gets no second event).
func (r *run) readable(c *conn) {
	for {
		n, stamp, err := r.recv(c.fd)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if c.call < 0 {
			// The server closed an idle connection, or sent what nobody
			// asked for: either way it is done.
			r.close(c)
			return
		}
		eof := n == 0
		if err != 0 {
			r.broken(c, "transport: "+errKind(err), len(c.in) == 0)
			return
		}
		data := r.rbuf[:n]
		if len(c.in) > 0 {
			c.in = append(c.in, data...)
			data = c.in
		}
		var a answer
		switch a.parse(data, eof) {
		case parseMore:
			if eof {
				r.broken(c, "transport: closed", len(data) == 0)
				return
			}
			if len(c.in) == 0 {
				c.in = append(c.in, data...)
			}
			if len(c.in) > maxAnswer {
				r.broken(c, "bad response", false)
				return
			}
			continue
		case parseBad:
			r.broken(c, "bad response", false)
			return
		}
		r.answered(c, &a, stamp)
		if a.close || a.size != len(data) {
			// Bytes after the answer are an answer to no request: the
			// connection cannot be trusted with the next call.
			r.close(c)
		} else {
			c.in = c.in[:0]
			if cap(c.in) > 64<<10 {
				c.in = nil
			}
			r.g.idle = append(r.g.idle, c)
		}
		return
	}
}

// answered records the call of c from its whole answer a, whose last
// bytes the kernel received at stamp (wall clock, 0 if unknown).
func (r *run) answered(c *conn, a *answer, stamp int64) {
	i := c.call
	c.call = -1
	c.served++
	at := r.now()
	if stamp != 0 {
		// Between the call's sending and now, whatever the wall clock did.
		at = max(r.due(i)+r.results[i].lag, min(at, time.Duration(stamp-r.wallBase)))
	} else {
		r.stamped = false
	}
	r.lastDone = max(r.lastDone, at)
	o := outcome{latency: at - r.due(i)}
	switch {
	case a.status != 200:
		o.failure = strconv.Itoa(a.status)
	default:
		id, reason, ok := answerFields(a.body)
		if !ok {
			o.failure = "bad body"
			break
		}
		o.id = string(id)
		if o.reason, ok = r.reasons[string(reason)]; !ok {
			o.reason = string(reason)
			r.reasons[o.reason] = o.reason
		}
	}
	r.finish(i, o)
}

// broken closes c after an error. The call in flight fails, unless the
// connection had served answers before and nothing of this call's answer
// came (retry): then it most likely met a keep-alive connection the server
// closed while idle, in the moment before the loop saw the close, and it is
// resent once on a new connection, as net/http resends in that case.
func (r *run) broken(c *conn, kind string, retry bool) {
	i := c.call
	stale := retry && c.served > 0
	r.close(c)
	if i < 0 {
		return
	}
	r.connErrors++
	if stale {
		if nc, err := r.dial(); err == nil {
			r.send(nc, i)
			return
		}
		kind = "transport: connect"
	}
	r.finish(i, outcome{failure: kind})
}

func (r *run) close(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	// Closing the descriptor also takes it out of the epoll set.
	_ = syscall.Close(c.fd)
	if r.g.conns[c.fd] == c {
		r.g.conns[c.fd] = nil
	}
	if c.call >= 0 {
		r.callConn[c.call] = nil
	}
	c.in, c.out = nil, nil
}

// finish records the outcome of call i, which is no longer in flight.
func (r *run) finish(i int, o outcome) {
	o.lag = r.results[i].lag
	r.results[i] = o
	if c := r.callConn[i]; c != nil && c.call == i {
		c.call = -1
	}
	r.callConn[i] = nil
	r.inFlight--
	if o.failure != "" {
		r.lastDone = max(r.lastDone, r.now())
	}
}

func (g *Generator) closeAll() {
	for i, c := range g.conns {
		if c != nil {
			_ = syscall.Close(c.fd)
			c.closed = true
			g.conns[i] = nil
		}
	}
	g.conns, g.idle = nil, nil
	if g.ep >= 0 {
		_ = syscall.Close(g.ep)
		g.ep = -1
	}
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect"
	}
	return "error"
}

// The loop's system calls are raw, so the runtime does not know of them:
// an announced one that lasts more than 20 µs (a loopback write does, and
// every wait) lets sysmon hand the loop's P to another thread and the loop
// take it back after, which costs thread wake-ups on every call. The loop
// keeps its thread and P while it waits, which is harmless while other Ps
// run the process's other goroutines, and a signal (a GC's preemption)
// ends any wait at once. With a single P, the waits are announced, or the
// loop would starve every other goroutine.

// waiter makes the loop's waiting system calls. Each passes its pointers
// straight to syscall.Syscall or RawSyscall: only there does a pointer
// turned into a uintptr stay valid.
type waiter struct{ raw bool }

func rawIO(trap uintptr, fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), e
}

// recv reads into rbuf and returns the kernel's receive time of the last
// bytes read, on the wall clock in ns, or 0.
func (r *run) recv(fd int) (n int, stamp int64, err syscall.Errno) {
	r.iov.Base = &r.rbuf[0]
	r.iov.SetLen(len(r.rbuf))
	r.msg = syscall.Msghdr{Iov: &r.iov, Iovlen: 1, Control: (*byte)(unsafe.Pointer(&r.oob[0]))}
	r.msg.SetControllen(len(r.oob) * 8)
	m, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msg)), 0)
	if e != 0 {
		return 0, 0, e
	}
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&r.oob[0])), min(int(r.msg.Controllen), len(r.oob)*8))
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			break
		}
		at := cmsgAlign(syscall.SizeofCmsghdr)
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= at+int(unsafe.Sizeof(syscall.Timespec{})) {
			stamp = (*syscall.Timespec)(unsafe.Pointer(&oob[at])).Nano()
		}
		oob = oob[min(cmsgAlign(l), len(oob)):]
	}
	return int(m), stamp, 0
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }

// sleep sleeps d, or less if a signal comes: the loop then looks again.
func (w waiter) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	if w.raw {
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	} else {
		_, _, _ = syscall.Syscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
}

// epollWait waits up to d for events and returns how many came.
func (w waiter) epollWait(ep int, evs []syscall.EpollEvent, d time.Duration) int {
	d = max(d, 0)
	var n uintptr
	var e syscall.Errno
	if !noPwait2.Load() {
		ts := syscall.NsecToTimespec(int64(d))
		if w.raw {
			n, _, e = syscall.RawSyscall6(sysEpollPwait2, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		} else {
			n, _, e = syscall.Syscall6(sysEpollPwait2, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		if e != syscall.ENOSYS {
			if e != 0 {
				return 0 // EINTR: the loop looks again
			}
			return int(n)
		}
		noPwait2.Store(true)
	}
	// Before Linux 5.11: whole milliseconds in epoll_wait, the rest asleep.
	ms := int(d / time.Millisecond)
	if ms == 0 {
		w.sleep(d)
	}
	if w.raw {
		n, _, e = syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(ms), 0, 0)
	} else {
		n, _, e = syscall.Syscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(ms), 0, 0)
	}
	if e != 0 {
		return 0
	}
	return int(n)
}
