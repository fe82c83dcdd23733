// docker-context prints the files of a Docker build context as BuildKit sends it: the folder
// given, filtered by its .dockerignore through BuildKit's own walker (tonistiigi/fsutil) and
// pattern reader (moby/patternmatcher), one path relative to the folder per line. The tests
// check the Dockerfile's COPY sources against it, where no image can be built.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: docker-context DIR")
		os.Exit(2)
	}
	if err := list(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "docker-context:", err)
		os.Exit(1)
	}
}

func list(root string) error {
	var excludes []string
	ignore, err := os.Open(filepath.Join(root, ".dockerignore"))
	switch {
	case err == nil:
		defer ignore.Close()
		if excludes, err = ignorefile.ReadAll(ignore); err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	base, err := fsutil.NewFS(root)
	if err != nil {
		return err
	}
	filtered, err := fsutil.NewFilterFS(base, &fsutil.FilterOpt{ExcludePatterns: excludes})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	return filtered.Walk(context.Background(), "", func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.IsDir() {
			fmt.Fprintln(out, path)
		}
		return nil
	})
}
