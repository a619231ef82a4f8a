package doctor

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Command lines in shell scripts and notes are checked too: `dockerd` (or
// the old `docker daemon`) flags become a daemon.json, `kubeadm init` flags
// a ClusterConfiguration, each flag keeping its line.

var commandRE = regexp.MustCompile(`^\s*(?:[$#]\s*)?(?:sudo\s+(?:-\S+\s+)*)?(dockerd|docker\s+daemon|kubeadm\s+init)(?:\s|$)`)

// token is a shell word and the line it is on.
type token struct {
	s    string
	line int
}

// parseCommandLines finds dockerd and kubeadm init commands in text.
func parseCommandLines(data []byte) []Doc {
	lines := strings.Split(string(data), "\n")
	var docs []Doc
	for i := 0; i < len(lines); i++ {
		m := commandRE.FindStringSubmatchIndex(lines[i])
		if m == nil {
			continue
		}
		command := lines[i][m[2]:m[3]]
		var words []token
		for j := i; j < len(lines); j++ {
			l := strings.TrimRight(lines[j], " \t\r")
			if j == i {
				l = l[m[2]:] // after any prompt ("$ ", "# ") and sudo
			}
			cont := strings.HasSuffix(l, "\\")
			for _, w := range shellWords(strings.TrimSuffix(l, "\\")) {
				words = append(words, token{w, j + 1})
			}
			i = j
			if !cont {
				break
			}
		}
		if len(words) == 0 {
			continue
		}
		// A command with none of the flags that matter takes its
		// configuration from elsewhere (daemon.json, --config): skip it.
		if strings.HasPrefix(command, "kubeadm") {
			if root := kubeadmFlags(words); len(root.Content) > 2 || len(get(root, "networking").Content) > 0 {
				docs = append(docs, Doc{Kind: KindKubeadm, Root: root})
			}
		} else if root := dockerdFlags(words); len(root.Content) > 0 {
			docs = append(docs, Doc{Kind: KindDockerDaemon, Root: root})
		}
	}
	return docs
}

// shellWords splits a line into words, honouring quotes and stopping at a
// comment.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote, started := false, byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, started = c, true
		case c == '#' && !in:
			i = len(s)
		case c == ' ' || c == '\t' || c == ';' || c == '|' || c == '&':
			if in || started {
				out = append(out, cur.String())
			}
			cur.Reset()
			in, started = false, false
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in || started {
		out = append(out, cur.String())
	}
	return out
}

// flags turns words into (name, value, line) triples. A flag's value is
// "--f=v" or the next word when it does not start with "-"; bool flags
// (listed) never take the next word.
func flags(words []token, bools map[string]bool) []flag {
	var out []flag
	for i := 0; i < len(words); i++ {
		w := words[i].s
		if !strings.HasPrefix(w, "--") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(w, "--"), "=")
		line := words[i].line
		if !hasValue {
			if bools[name] {
				value = "true"
			} else if i+1 < len(words) && !strings.HasPrefix(words[i+1].s, "-") {
				value = words[i+1].s
				i++
			}
		}
		out = append(out, flag{name, value, line})
	}
	return out
}

type flag struct {
	name, value string
	line        int
}

func scalarNode(v string, line int, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v, Line: line}
}

func mapNode(line int) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
}

func setKey(m *yaml.Node, key string, line int, v *yaml.Node) {
	m.Content = append(m.Content, scalarNode(key, line, "!!str"), v)
}

func dockerdFlags(words []token) *yaml.Node {
	root := mapNode(words[0].line)
	var pools *yaml.Node
	for _, f := range flags(words, map[string]bool{"ipv6": true, "ip6tables": true, "experimental": true, "userland-proxy": true, "iptables": true}) {
		switch f.name {
		case "ipv6", "ip6tables", "experimental", "userland-proxy":
			setKey(root, f.name, f.line, scalarNode(f.value, f.line, "!!bool"))
		case "fixed-cidr-v6", "fixed-cidr", "bip":
			setKey(root, f.name, f.line, scalarNode(f.value, f.line, "!!str"))
		case "default-address-pool":
			if pools == nil {
				pools = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: f.line}
				setKey(root, "default-address-pools", f.line, pools)
			}
			pool := mapNode(f.line)
			for _, kv := range strings.Split(f.value, ",") {
				k, v, _ := strings.Cut(kv, "=")
				setKey(pool, k, f.line, scalarNode(v, f.line, "!!str"))
			}
			pools.Content = append(pools.Content, pool)
		}
	}
	return root
}

func kubeadmFlags(words []token) *yaml.Node {
	root := mapNode(words[0].line)
	net := mapNode(words[0].line)
	setKey(root, "networking", words[0].line, net)
	for _, f := range flags(words, nil) {
		switch f.name {
		case "pod-network-cidr":
			setKey(net, "podSubnet", f.line, scalarNode(f.value, f.line, "!!str"))
		case "service-cidr":
			setKey(net, "serviceSubnet", f.line, scalarNode(f.value, f.line, "!!str"))
		case "kubernetes-version":
			setKey(root, "kubernetesVersion", f.line, scalarNode(f.value, f.line, "!!str"))
		case "feature-gates":
			gates := mapNode(f.line)
			for _, kv := range strings.Split(f.value, ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					setKey(gates, strings.TrimSpace(k), f.line, scalarNode(strings.TrimSpace(v), f.line, "!!bool"))
				}
			}
			setKey(root, "featureGates", f.line, gates)
		}
	}
	return root
}
