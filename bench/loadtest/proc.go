package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times. It is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// Proc is one process whose cost the report shows.
type Proc struct {
	Name string
	Pid  int
}

// ProcUsage is a process's cost over one step.
type ProcUsage struct {
	Pid       int     `json:"pid"`
	CPUSec    float64 `json:"cpu_s"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// PeakIsLifetime is set when the kernel refused to reset the peak at
	// the step's start, so the figure is the process's lifetime peak.
	PeakIsLifetime bool `json:"peak_is_lifetime,omitempty"`
}

// cpuTime reads utime+stime of a process, in seconds.
func cpuTime(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state is field 3, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// peakRSS reads VmHWM, the resident set's high-water mark, in MB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// resetPeak sets a process's VmHWM back to its current RSS (Linux 4.0+), so
// that the next reading is the peak of the step alone.
func resetPeak(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// machineBusy reads the CPU seconds the whole machine has spent busy (not
// idle, not waiting for I/O), from /proc/stat.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", v, err)
		}
		// user nice system idle iowait irq softirq steal: all but idle
		// and iowait; guest time is already inside user.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return float64(busy) / clockTicks, nil
}

// meter follows a set of processes over a step.
type meter struct {
	procs    []Proc
	cpu0     map[string]float64
	lifetime map[string]bool
	busy0    float64
}

func startMeter(procs []Proc) *meter {
	m := &meter{procs: procs, cpu0: map[string]float64{}, lifetime: map[string]bool{}}
	for _, p := range procs {
		m.lifetime[p.Name] = !resetPeak(p.Pid)
		m.cpu0[p.Name], _ = cpuTime(p.Pid)
	}
	m.busy0, _ = machineBusy()
	return m
}

// others is the CPU seconds the rest of the machine used since start:
// what the benchmark's processes competed with.
func (m *meter) others(usage map[string]ProcUsage) float64 {
	busy, err := machineBusy()
	if err != nil || m.busy0 == 0 {
		return 0
	}
	ours := 0.0
	for _, u := range usage {
		ours += u.CPUSec
	}
	return max(0, busy-m.busy0-ours)
}

// stop reads each process's CPU seconds since start and its peak RSS. A
// process that died in between is reported with what could be read.
func (m *meter) stop() map[string]ProcUsage {
	out := map[string]ProcUsage{}
	for _, p := range m.procs {
		u := ProcUsage{Pid: p.Pid, PeakIsLifetime: m.lifetime[p.Name]}
		if c, err := cpuTime(p.Pid); err == nil {
			u.CPUSec = c - m.cpu0[p.Name]
		}
		u.PeakRSSMB, _ = peakRSS(p.Pid)
		out[p.Name] = u
	}
	return out
}

// pidFiles reads every <dir>/*.pid, as rdv dev writes them.
func pidFiles(dir string) ([]Proc, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the stage is restarting
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, Proc{Name: strings.TrimSuffix(filepath.Base(f), ".pid"), Pid: pid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
