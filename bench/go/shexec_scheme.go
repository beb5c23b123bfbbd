// A peer for bench/shell.bench.ts: Go driving one bash the way the Go package shexec does
// (github.com/monopole/shexec, which cannot be fetched here), written for this benchmark.
// Its scheme and structure: a goroutine writes lines from a channel to the shell's stdin,
// one reads stdout into a channel of lines and one drains stderr; each run sends the
// command and then a sentinel command (`echo <sentinel>`) as two writes, and a goroutine
// per run scans the lines for the sentinel while the caller waits on it or a timeout. It
// learns no exit status and gives the command the driver's stdin.
//
//	go run bench/go/shexec_scheme.go -seconds 1 -command 'echo hi'   → prints runs/s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

const sentinel = "__procsock_bench_sentinel__"

type shell struct {
	stdin  chan<- string
	stdout <-chan string
}

func start() (*shell, *exec.Cmd, error) {
	cmd := exec.Command("bash")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := make(chan string)
	commands := make(chan string)
	go func() {
		for command := range commands {
			if _, err := io.WriteString(in, command+"\n"); err != nil {
				return
			}
		}
		in.Close()
	}()
	go func() {
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	go func() { _, _ = io.Copy(io.Discard, errPipe) }()
	return &shell{stdin: commands, stdout: lines}, cmd, nil
}

// run sends the command and the sentinel, and returns the command's stdout.
func (s *shell) run(command string, timeout time.Duration) (string, error) {
	s.stdin <- command
	s.stdin <- "echo " + sentinel
	found := make(chan string)
	go func() {
		var output strings.Builder
		for line := range s.stdout {
			if strings.HasSuffix(line, sentinel) {
				output.WriteString(strings.TrimSuffix(line, sentinel))
				found <- output.String()
				return
			}
			output.WriteString(line)
			output.WriteByte('\n')
		}
		close(found)
	}()
	select {
	case output, ok := <-found:
		if !ok {
			return "", fmt.Errorf("the shell's stdout ended before the sentinel")
		}
		return output, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no sentinel after %s", timeout)
	}
}

func main() {
	seconds := flag.Float64("seconds", 1, "how long to run")
	command := flag.String("command", "echo hi", "the command to run")
	warmup := flag.Int("warmup", 2000, "runs before measuring")
	flag.Parse()
	s, cmd, err := start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	check := func(output string, err error) {
		if err != nil || output != "hi\n" {
			fmt.Fprintf(os.Stderr, "wrong result %q (%v)\n", output, err)
			os.Exit(1)
		}
	}
	for i := 0; i < *warmup; i++ {
		check(s.run(*command, 5*time.Second))
	}
	began := time.Now()
	deadline := began.Add(time.Duration(*seconds * float64(time.Second)))
	runs := 0
	for time.Now().Before(deadline) {
		check(s.run(*command, 5*time.Second))
		runs++
	}
	fmt.Printf("%.0f\n", float64(runs)/time.Since(began).Seconds())
	close(s.stdin)
	_ = cmd.Wait()
}
