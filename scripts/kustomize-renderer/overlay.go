package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"sigs.k8s.io/kustomize/kyaml/errors"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlayFs is a kubefiles directory as kustomize would find it in runboat's scratch copy: the
// directory on disk, its templates' outputs in place of the templates. The worker rendered the
// templates; it no longer copies the directory, writes them into the copy and removes it all
// again for every render (the worker's main thread spent a tenth of a burst on that).
//
// Everything else is the disk's, errors included: a missing file fails with the message
// `kubectl kustomize` prints for a copy that lacks it.
type overlayFs struct {
	filesys.FileSystem
	// Rendered contents by absolute path, and the template sources left out.
	files   map[string][]byte
	omitted map[string]bool
}

// newOverlayFs lays `files` (rendered contents by path in dir) over `dir`, without `omit`.
// It returns the directory to build, with its symbolic links resolved as kustomize resolves
// every path it reads, so that they are found in the overlay.
func newOverlayFs(dir string, files map[string]string, omit []string) (*overlayFs, string, error) {
	root, err := filepath.Abs(dir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, "", err
	}
	o := &overlayFs{
		FileSystem: filesys.MakeFsOnDisk(),
		files:      make(map[string][]byte, len(files)),
		omitted:    make(map[string]bool, len(omit)),
	}
	for name, content := range files {
		o.files[filepath.Join(root, name)] = []byte(content)
	}
	for _, name := range omit {
		o.omitted[filepath.Join(root, name)] = true
	}
	return o, root, nil
}

func (o *overlayFs) key(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// at is what the overlay holds at path: a rendered file's content, a template left out, or
// neither (the disk answers).
func (o *overlayFs) at(path string) (content []byte, rendered, omitted bool) {
	abs := o.key(path)
	content, rendered = o.files[abs]
	return content, rendered, o.omitted[abs]
}

// notFound is what the disk answers for a file that is not there.
func notFound(op, path string) error {
	return &fs.PathError{Op: op, Path: path, Err: syscall.ENOENT}
}

func (o *overlayFs) Exists(path string) bool {
	_, rendered, omitted := o.at(path)
	return rendered || !omitted && o.FileSystem.Exists(path)
}

func (o *overlayFs) IsDir(path string) bool {
	_, rendered, omitted := o.at(path)
	return !rendered && !omitted && o.FileSystem.IsDir(path)
}

func (o *overlayFs) ReadFile(path string) ([]byte, error) {
	content, rendered, omitted := o.at(path)
	switch {
	case rendered:
		return bytes.Clone(content), nil
	case omitted:
		return nil, errors.Wrap(notFound("open", path))
	}
	return o.FileSystem.ReadFile(path)
}

func (o *overlayFs) Open(path string) (filesys.File, error) {
	content, rendered, omitted := o.at(path)
	switch {
	case rendered:
		return &overlayFile{Reader: bytes.NewReader(content), name: filepath.Base(path)}, nil
	case omitted:
		return nil, notFound("open", path)
	}
	return o.FileSystem.Open(path)
}

// CleanedAbs as the disk's (fsOnDisk.CleanedAbs), for files that are only in the overlay.
func (o *overlayFs) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	abs := o.key(path)
	if o.omitted[abs] {
		return "", "", fmt.Errorf("evalsymlink failure on '%s' : %w", path, notFound("lstat", abs))
	}
	if _, rendered := o.files[abs]; !rendered {
		return o.FileSystem.CleanedAbs(path)
	}
	dir, _, err := o.FileSystem.CleanedAbs(filepath.Dir(abs))
	return dir, filepath.Base(abs), err
}

// fromDisk keeps the disk's paths that the overlay neither replaces nor leaves out.
func (o *overlayFs) fromDisk(paths []string, pathOf func(string) string) []string {
	kept := paths[:0]
	for _, p := range paths {
		if _, rendered, omitted := o.at(pathOf(p)); !rendered && !omitted {
			kept = append(kept, p)
		}
	}
	return kept
}

func (o *overlayFs) ReadDir(path string) ([]string, error) {
	names, err := o.FileSystem.ReadDir(path)
	if err != nil {
		return nil, err
	}
	dir := o.key(path)
	kept := o.fromDisk(names, func(name string) string { return filepath.Join(dir, name) })
	for file := range o.files {
		if filepath.Dir(file) == dir {
			kept = append(kept, filepath.Base(file))
		}
	}
	sort.Strings(kept)
	return kept, nil
}

func (o *overlayFs) Glob(pattern string) ([]string, error) {
	matches, err := o.FileSystem.Glob(pattern)
	if err != nil {
		return nil, err
	}
	kept := o.fromDisk(matches, func(match string) string { return match })
	for file := range o.files {
		hidden := filesys.IsHiddenFilePath(file) && !filesys.IsHiddenFilePath(pattern)
		if ok, _ := filepath.Match(o.key(pattern), file); ok && !hidden {
			kept = append(kept, file)
		}
	}
	sort.Strings(kept)
	return kept, nil
}

// Walk is kustomize's for `kustomize localize`, never for a build: not given a view of the
// overlay it would not use.
func (o *overlayFs) Walk(path string, walkFn filepath.WalkFunc) error {
	return fmt.Errorf("kustomize-renderer: cannot walk %s", path)
}

// overlayFile is a rendered file opened for reading.
type overlayFile struct {
	*bytes.Reader
	name string
}

func (f *overlayFile) Write([]byte) (int, error) {
	return 0, fmt.Errorf("kustomize-renderer: %s is read-only", f.name)
}

func (f *overlayFile) Close() error { return nil }

func (f *overlayFile) Stat() (os.FileInfo, error) { return overlayFileInfo{f}, nil }

type overlayFileInfo struct{ file *overlayFile }

func (i overlayFileInfo) Name() string       { return i.file.name }
func (i overlayFileInfo) Size() int64        { return i.file.Reader.Size() }
func (i overlayFileInfo) Mode() os.FileMode  { return 0o444 }
func (i overlayFileInfo) ModTime() time.Time { return time.Time{} }
func (i overlayFileInfo) IsDir() bool        { return false }
func (i overlayFileInfo) Sys() any           { return nil }
