//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package embedded

import "os"

// On platforms without flock the directory is not locked: do not point two
// servers at one directory there.
func lockExclusive(*os.File) error { return nil }

func unlock(*os.File) error { return nil }

// Directories cannot be fsynced portably here; renames are still atomic.
func syncDir(string) error { return nil }
