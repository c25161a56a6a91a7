package dev

import (
	"errors"
	"fmt"
	"net"
)

// FreePorts finds n consecutive free loopback ports and returns the first:
// rdv dev takes its ports from a base (-http-port-base), so a test or a
// benchmark that runs it beside others needs a free run of them.
func FreePorts(n int) (int, error) {
	for attempt := 0; attempt < 50; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
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
