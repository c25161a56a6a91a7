package dev

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePorts finds n consecutive free loopback ports and returns the first:
// rdv dev takes its ports from a base (-http-port-base), so a test or a
// benchmark that runs it beside others needs a free run of them. The run
// is taken below the kernel's ephemeral range when it can be: a port in
// that range may be taken by any outgoing connection between the check and
// the moment a stage listens on it.
func FreePorts(n int) (int, error) {
	low := ephemeralLow()
	for attempt := 0; attempt < 200; attempt++ {
		var base int
		if low-n > 10000 {
			base = 10000 + rand.IntN(low-n-10000)
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			base = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		}
		if base+n > 65000 {
			continue
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no run of free loopback ports found")
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return v
}
