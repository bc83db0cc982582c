// refparse reads image references, one per line, and prints how the distribution reference
// library (what the Docker CLI, containerd and the kubelet use) parses each one, as JSON lines.
// Referee's tests compare webhook/reference.py with it on the same table.
package main

import (
	"bufio"
	_ "crypto/sha256" // digests: the library needs the algorithms linked in
	_ "crypto/sha512"
	"encoding/json"
	"os"

	"github.com/distribution/reference"
)

type result struct {
	Input  string `json:"input"`
	OK     bool   `json:"ok"`
	Domain string `json:"domain,omitempty"`
	Path   string `json:"path,omitempty"`
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var text string
		if err := json.Unmarshal(in.Bytes(), &text); err != nil {
			panic(err)
		}
		r := result{Input: text}
		named, err := reference.ParseNormalizedNamed(text)
		if err != nil {
			r.Error = err.Error()
		} else {
			named = reference.TagNameOnly(named)
			r.OK = true
			r.Domain = reference.Domain(named)
			r.Path = reference.Path(named)
			if t, ok := named.(reference.Tagged); ok {
				r.Tag = t.Tag()
			}
			if d, ok := named.(reference.Digested); ok {
				r.Digest = d.Digest().String()
			}
		}
		if err := out.Encode(r); err != nil {
			panic(err)
		}
	}
}
