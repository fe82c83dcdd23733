// A long-lived `kubectl kustomize`: the worker starts it once and sends it kustomization
// directories, instead of spawning kubectl for every render.
//
// Protocol, one JSON object per line:
//
//	stdin:  {"id": 1, "dir": "/srv/kubefiles", "files": {"kustomization.yaml": "..."}, "omit": ["kustomization.yaml.jinja"]}
//	stdout: {"id": 1, "objects": [{"apiVersion": "v1", ...}, ...]}   or   {"id": 1, "error": "..."}
//
// The objects are those `kubectl kustomize` prints, in its order, as JSON: kustomize makes its
// YAML from each object's JSON (resource.AsYAML), and this is that JSON, which the worker reads
// natively instead of parsing YAML (a tenth of its main thread in a burst).
//
// `files` and `omit` are optional: the kustomization is `dir` with `files` (contents by path in
// `dir`) written over it and without `omit`, built in place (overlayFs), not copied anywhere.
//
// Requests are answered in order, one at a time: krusty.Kustomizer.Run is not safe to call
// from several goroutines (kyaml's OpenAPI schema is global state). The program exits when
// stdin closes, so it never outlives the process that started it. Kustomize's own warnings
// go to stderr, as with kubectl.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/openapi"
)

type request struct {
	ID    json.RawMessage   `json:"id"`
	Dir   string            `json:"dir"`
	Files map[string]string `json:"files"`
	Omit  []string          `json:"omit"`
}

// Objects is set on success, empty or not: a worker told from an older renderer's answer (YAML
// text) by it refuses the answer instead of applying nothing.
type response struct {
	ID      json.RawMessage    `json:"id"`
	Objects *[]json.RawMessage `json:"objects,omitempty"`
	Error   *string            `json:"error,omitempty"`
}

// The options `kubectl kustomize DIR` runs with (kustomize/v5 commands/build with no flags):
// unlike krusty.MakeDefaultOptions, the reorder flag is unset, which sorts in legacy order
// unless the kustomization has sortOptions.
func options() *krusty.Options {
	o := krusty.MakeDefaultOptions()
	o.Reorder = krusty.ReorderOptionUnspecified
	o.PluginConfig.HelmConfig.Command = "helm"
	return o
}

// The built-in schema's version, as kyaml reports it before any kustomization changes it.
var builtinSchema = openapi.GetSchemaVersion()

// kyaml keeps the OpenAPI schema in globals, parsed once per process, and a kustomization's
// `openapi` field changes them: a custom schema is parsed on top of what earlier renders left,
// so a warm process could give other results than kubectl's fresh one. Such a kustomization
// is rendered again from a clean state, and the built-in schema put back for the next one.
// (Resetting before every render would re-parse the built-in schema: ~65 ms each.)
func build(req request) ([]json.RawMessage, error) {
	fSys, dir := filesys.MakeFsOnDisk(), req.Dir
	if len(req.Files) > 0 || len(req.Omit) > 0 {
		overlay, root, err := newOverlayFs(req.Dir, req.Files, req.Omit)
		if err != nil {
			return nil, err
		}
		fSys, dir = overlay, root
	}
	out, err := run(fSys, dir)
	if openapi.GetSchemaVersion() != builtinSchema {
		openapi.ResetOpenAPI()
		out, err = run(fSys, dir)
		openapi.ResetOpenAPI()
	}
	return out, err
}

func run(fSys filesys.FileSystem, dir string) (objects []json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kustomize panicked: %v", r)
		}
	}()
	m, err := krusty.MakeKustomizer(options()).Run(fSys, dir)
	if err != nil {
		return nil, err
	}
	resources := m.Resources()
	objects = make([]json.RawMessage, 0, len(resources))
	for _, r := range resources {
		object, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		objects = append(objects, object)
	}
	return objects, nil
}

func main() {
	// A render allocates a lot for a small live heap (a few MB): collecting at 5x the live heap
	// instead of 2x saves ~40% of the CPU per render for ~20 MB more RSS. GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	in := bufio.NewReader(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for {
		line, readErr := in.ReadBytes('\n')
		if len(line) > 0 {
			var req request
			res := response{}
			if err := json.Unmarshal(line, &req); err != nil {
				message := fmt.Sprintf("bad request: %v", err)
				res.Error = &message
			} else {
				res.ID = req.ID
				if objects, err := build(req); err != nil {
					message := err.Error()
					res.Error = &message
				} else {
					res.Objects = &objects
				}
			}
			if err := out.Encode(res); err != nil {
				fmt.Fprintf(os.Stderr, "kustomize-renderer: cannot write: %v\n", err)
				os.Exit(1)
			}
		}
		if readErr == io.EOF {
			return
		}
		if readErr != nil {
			fmt.Fprintf(os.Stderr, "kustomize-renderer: cannot read: %v\n", readErr)
			os.Exit(1)
		}
	}
}
