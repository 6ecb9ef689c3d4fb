package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// launch starts bin with args (environment: this process's plus env),
// its stderr into stderr, and waits up to a minute for the two address
// lines `iapd: public …` and `iapd: ops …` on its stdout (the rest of
// stdout is discarded). exited receives cmd.Wait's result once. The
// process is killed when the test ends; launch fails the test if it
// exits or stays silent first.
func launch(t testing.TB, bin string, args, env []string, stderr *syncBuffer) (cmd *exec.Cmd, exited chan error, public, ops string) {
	t.Helper()
	cmd = exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	exited, public, ops = launchCmd(t, cmd, stderr)
	return cmd, exited, public, ops
}

// launchCmd is launch for a command already set up (arguments,
// environment, extra files): it starts cmd with its stderr into stderr
// and waits for the two address lines (http or https URLs).
func launchCmd(t testing.TB, cmd *exec.Cmd, stderr *syncBuffer) (exited chan error, public, ops string) {
	t.Helper()
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	exited = make(chan error, 1)
	addrs := make(chan [2]string, 1)
	go func() {
		var pub, ops string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := addrLine.FindStringSubmatch(sc.Text()); m != nil {
				if m[1] == "public" {
					pub = m[2]
				} else {
					ops = m[2]
				}
				if pub != "" && ops != "" {
					addrs <- [2]string{pub, ops}
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	name := filepath.Base(cmd.Path)
	select {
	case a := <-addrs:
		return exited, a[0], a[1]
	case err := <-exited:
		t.Fatalf("%s exited at start: %v\n%s", name, err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not print its addresses\n%s", name, stderr.String())
	}
	return nil, "", ""
}
