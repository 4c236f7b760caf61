#!/usr/bin/env python3
"""CI checks of the deployment files, with no cluster, no Docker engine and no helm.

YamlLintTest: yamllint (deploy/yamllint.yaml) of the chart's values.yaml and Chart.yaml, every
  YAML file under deploy/, and the chart rendered (render_chart.py) with its defaults and with
  every optional part switched on.
ConfigTest: every --flag the Dockerfile, the chart (values and templates, rendered) and the plain
  manifests pass to zigzag-server exists in `zigzag-server --help`; container, Service, probe,
  EXPOSE, HEALTHCHECK and scrape-annotation ports agree with the server's default --port and
  --metrics-port; probes ask for the health services the server sets; deploy/kubernetes equals
  the chart rendered; the metric names in the dashboard, HPA, KEDA and adapter rules exist in
  server/metrics.cc; the chart's default flags start a real server; the Dockerfile's VARIANT
  stages (cpu reaches no NVIDIA repository; zigzag-server only, Release, no -Werror).

  test_deploy_config.py --repo-root R --server-binary S [--work-dir W] -- [-v] [ConfigTest]
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import unittest

import yaml

import deploy_test_support as support
from deploy_test_support import PATHS, flag_name, repo, server_help_flags

import local_server
import render_chart

CHART = "helm/zigzag-serve"
# Value sets the chart is rendered with: defaults, and every optional part switched on.
VARIANTS = {
    "defaults": [],
    "everything": ["autoscaling.enabled=true", "serviceMonitor.enabled=true",
                   "service.headless.enabled=true", "model.source=pvc", "model.pvc.create=true",
                   "server.tls.secretName=zigzag-tls", "server.authTokenSecret.name=zigzag-auth",
                   "server.extraArgs=[--kv-window=32, --kv-kernel=7]",
                   "podDisruptionBudget.minAvailable=1", "runtimeClassName=nvidia",
                   "nodeSelector={nvidia.com/gpu.present: 'true'}"],
    "keda-initcontainer": ["keda.enabled=true", "model.source=initContainer",
                           "server.grpcPort=50052", "server.metricsPort=9191",
                           "service.grpcPort=50052", "service.metricsPort=9191"],
}


def render(sets):
    values = render_chart.load_values(repo(CHART), sets=sets)
    renderer = render_chart.Renderer(repo(CHART), values, release="ci", namespace="ci")
    rendered = renderer.render_all()
    return rendered, [yaml.safe_load(doc) for _, doc in render_chart.documents(rendered)]


def server_container(docs):
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 1, "one Deployment expected"
    pod = deployments[0]["spec"]["template"]
    containers = pod["spec"]["containers"]
    return pod, [c for c in containers if c["name"] == "zigzag-server"][0]


def args_dict(args):
    out = {}
    for arg in args:
        name = flag_name(arg)
        if name:
            out[name] = arg.split("=", 1)[1] if "=" in arg else None
    return out


def dockerfile_instructions():
    """[(INSTRUCTION, argument text)] with line continuations joined and comments dropped."""
    with open(repo("Dockerfile")) as f:
        text = f.read()
    lines, current = [], ""
    for line in text.split("\n"):
        if not current and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def dockerfile_stages(instructions):
    """(global ARG defaults, {stage name: [(INSTRUCTION, text)] from its FROM on})."""
    args, stages, current = {}, {}, None
    for kind, rest in instructions:
        if kind == "FROM":
            image, _, name = rest.partition(" AS ")
            current = name.strip() or f"#{len(stages)}"
            stages[current] = [(kind, image.strip())]
        elif current is None and kind == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif current is not None:
            stages[current].append((kind, rest))
    return args, stages


def stages_reached(stages, target, variant):
    """The stages a build of `target` with VARIANT=variant runs: FROM and COPY --from, followed."""
    reached, todo = [], [target]
    while todo:
        name = todo.pop().replace("${VARIANT}", variant)
        if name in reached or name not in stages:
            continue
        reached.append(name)
        for kind, rest in stages[name]:
            if kind == "FROM":
                todo.append(rest)
            elif kind == "COPY":
                todo += re.findall(r"--from=(\S+)", rest)
    return reached


def cmake_subdirectories():
    """[(folder, None or the option of the if() around it)] of the root CMakeLists.txt."""
    with open(repo("CMakeLists.txt")) as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    result, conditions = [], []
    for line in lines:
        if m := re.match(r"if\s*\(\s*(\w+)\s*\)$", line):
            conditions.append(m.group(1))
        elif re.match(r"if\s*\(", line):
            conditions.append("?" + line)
        elif re.match(r"endif\s*\(", line):
            conditions.pop()
        elif m := re.match(r"add_subdirectory\s*\(\s*([\w/.-]+)", line):
            result.append((m.group(1), conditions[-1] if conditions else None))
    return result


def option_default_off(name):
    with open(repo("CMakeLists.txt")) as f:
        return re.search(rf'option\(\s*{name}\s+"[^"]*"\s+OFF\s*\)', f.read()) is not None


def metric_names_in_server():
    names = set()
    for fname in ("metrics.cc",):
        with open(repo("server", fname)) as f:
            names |= set(re.findall(r'"(zigzag_[a-z0-9_]+)"', f.read()))
    return names


def base_metric(name):
    return re.sub(r"_(bucket|sum|count)$", "", name)


class YamlLintTest(unittest.TestCase):
    def yamllint(self, paths=(), stdin=None):
        exe = shutil.which("yamllint")
        self.assertIsNotNone(exe, "yamllint is missing (apt-get install yamllint; setup.sh)")
        result = subprocess.run([exe, "-f", "parsable", "-c", repo("deploy", "yamllint.yaml")]
                                + list(paths), input=stdin, capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_values_chart_and_manifests(self):
        files = [repo(CHART, "values.yaml"), repo(CHART, "Chart.yaml"),
                 repo("deploy", "yamllint.yaml")]
        for root, _, names in os.walk(repo("deploy")):
            files += [os.path.join(root, n) for n in names if n.endswith((".yaml", ".yml"))]
        self.assertGreater(len(files), 6)
        self.yamllint(sorted(set(files)))

    def test_rendered_chart(self):
        for variant, sets in VARIANTS.items():
            with self.subTest(variant=variant):
                rendered, _ = render(sets)
                stream = "---\n".join(d for _, d in render_chart.documents(rendered))
                self.yamllint(["-"], stdin="---\n" + stream)

    def test_templates_only_use_the_rendered_subset(self):
        # Every template renders (the renderer refuses functions it does not know).
        for variant, sets in VARIANTS.items():
            with self.subTest(variant=variant):
                rendered, docs = render(sets)
                self.assertIn("NOTES.txt", rendered)
                for doc in docs:
                    self.assertIn("apiVersion", doc)
                    self.assertIn("kind", doc)

    def test_hpa_and_keda_exclude_each_other(self):
        with self.assertRaisesRegex(render_chart.TemplateError, "exclude each other"):
            render(["autoscaling.enabled=true", "keda.enabled=true"])


class ConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.help = server_help_flags()
        cls.grpc_port = int(cls.help["port"])
        cls.metrics_port = int(cls.help["metrics_port"])
        # The HTTP health paths the server answers (server/metrics_http.cc).
        with open(repo("server", "metrics_http.cc")) as f:
            cls.http_health_paths = re.findall(r'k(?:Live|Ready)Path = "([^"]+)"', f.read())
        assert sorted(cls.http_health_paths) == ["/livez", "/readyz"], cls.http_health_paths

    def assert_flags_exist(self, args, where):
        for arg in args:
            name = flag_name(arg)
            if name is None:
                continue
            if name.startswith("no") and name[2:] in self.help:
                continue  # abseil's --nofoo for boolean foo
            self.assertIn(name, self.help,
                          f"{where} passes --{name}, which `zigzag-server --help` lacks")

    # Flags -------------------------------------------------------------------------------------

    def test_chart_flags_exist(self):
        for variant, sets in VARIANTS.items():
            with self.subTest(variant=variant):
                _, docs = render(sets)
                _, container = server_container(docs)
                self.assertEqual(container["command"], ["/usr/local/bin/zigzag-server"])
                self.assert_flags_exist(container["args"], f"the chart ({variant})")
        with open(repo(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        for name in values["server"]["flags"]:
            self.assertIn(name.replace("-", "_"), self.help, f"values.yaml server.flags.{name}")
        self.assert_flags_exist(values["server"]["extraArgs"], "values.yaml server.extraArgs")
        # Flags written into the templates themselves, whichever branch they are in.
        with open(repo(CHART, "templates", "deployment.yaml")) as f:
            template_flags = re.findall(r"^\s*- (--[a-z][a-z0-9_-]*)=", f.read(), re.M)
        self.assertGreater(len(template_flags), 6)
        self.assert_flags_exist(template_flags, "templates/deployment.yaml")

    def test_plain_manifest_flags_exist(self):
        with open(repo("deploy", "kubernetes", "zigzag-serve.yaml")) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        _, container = server_container(docs)
        self.assert_flags_exist(container["args"], "deploy/kubernetes/zigzag-serve.yaml")

    def test_dockerfile(self):
        instructions = dockerfile_instructions()
        kinds = [k for k, _ in instructions]
        stages = [rest for k, rest in instructions if k == "FROM"]
        self.assertGreaterEqual(len(stages), 2, "multi-stage build expected")
        self.assertTrue(any(" AS builder" in s for s in stages), stages)
        self.assertTrue(any(" AS runtime" in s for s in stages), stages)
        runtime_at = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
        runtime = instructions[runtime_at:]
        users = [rest for k, rest in runtime if k == "USER"]
        self.assertTrue(users, "the runtime stage needs a USER")
        self.assertNotIn(users[-1].split(":")[0], ("0", "root"))
        self.assertTrue(users[-1].split(":")[0].isdigit(),
                        "numeric USER, so runAsNonRoot can verify it")
        copies = [rest for k, rest in runtime if k == "COPY"]
        self.assertTrue(any("models/zigzag-tiny /models/zigzag-tiny" in c for c in copies))
        for needed in ("HEALTHCHECK", "EXPOSE", "ENTRYPOINT", "CMD"):
            self.assertIn(needed, kinds)
        entrypoint = json.loads(dict(runtime)["ENTRYPOINT"])
        cmd = json.loads(dict(runtime)["CMD"])
        self.assertEqual(entrypoint[0], "/usr/local/bin/zigzag-server")
        self.assert_flags_exist(entrypoint[1:] + cmd, "Dockerfile ENTRYPOINT/CMD")
        args = args_dict(entrypoint[1:] + cmd)
        self.assertEqual(args["model"], "/models/zigzag-tiny")
        self.assertEqual(int(args["port"]), self.grpc_port)
        self.assertEqual(int(args["metrics_port"]), self.metrics_port)
        exposed = {int(p.split("/")[0]) for k, rest in runtime if k == "EXPOSE"
                   for p in rest.split()}
        self.assertEqual(exposed, {self.grpc_port, self.metrics_port})
        health = dict(runtime)["HEALTHCHECK"]
        health_cmd = json.loads(health[health.index("CMD") + 3:].strip())
        self.assertIn("/usr/local/bin/grpc_health_check.py", health_cmd)
        self.assertIn(f"127.0.0.1:{self.grpc_port}", health_cmd)
        self.assertIn("zigzag.v1.Engine", health_cmd)
        # The builder installs what the HEALTHCHECK runs, and runs setup.sh.
        builder_runs = " ".join(rest for k, rest in instructions[:runtime_at] if k == "RUN")
        self.assertIn("scripts/setup.sh", builder_runs)
        self.assertIn("deploy/docker/grpc_health_check.py", builder_runs)

    def test_dockerfile_variants(self):
        args, stages = dockerfile_stages(dockerfile_instructions())
        self.assertEqual(args.get("VARIANT"), "cuda", "ARG VARIANT (default cuda) before FROM")
        self.assertEqual(list(stages)[-1], "runtime", "the last stage is the runtime image")
        for name in ("toolchain-cpu", "toolchain-cuda", "runtime-cpu", "runtime-cuda"):
            self.assertIn(name, stages)
        self.assertEqual(stages["builder"][0], ("FROM", "toolchain-${VARIANT}"))
        self.assertEqual(stages["runtime"][0], ("FROM", "runtime-${VARIANT}"))

        def text(names):
            return "\n".join(f"{k} {r}" for n in names for k, r in stages[n])

        nvidia = re.compile(r"nvidia|cuda-keyring|CUDA_REPO|cuda-nvcc|libcublas", re.I)
        reached = {}
        for variant in ("cpu", "cuda"):
            reached[variant] = stages_reached(stages, "runtime", variant)
            self.assertIn("builder", reached[variant])
            self.assertIn(f"toolchain-{variant}", reached[variant])
            self.assertIn(f"runtime-{variant}", reached[variant])
        # The cpu variant never touches NVIDIA's repository (built where it is unreachable).
        self.assertNotIn("toolchain-cuda", reached["cpu"])
        self.assertNotIn("runtime-cuda", reached["cpu"])
        self.assertIsNone(nvidia.search(text(reached["cpu"])), text(reached["cpu"]))
        self.assertIn("cuda-keyring", text(["toolchain-cuda", "runtime-cuda"]))
        # Which backend the builder compiles follows the toolchain stage.
        envs = {v: " ".join(r for k, r in stages[f"toolchain-{v}"] if k == "ENV")
                for v in ("cpu", "cuda")}
        self.assertIn("ZIGZAG_CMAKE_CUDA=OFF", envs["cpu"])
        self.assertIn("ZIGZAG_CMAKE_CUDA=ON", envs["cuda"])
        build = " ".join(r for k, r in stages["builder"] if k == "RUN")
        self.assertIn('-DZIGZAG_CUDA="${ZIGZAG_CMAKE_CUDA}"', build)
        # A user's image build: Release, zigzag-server only, no -Werror (that is CI's).
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", build)
        self.assertIn("--target zigzag-server", build)
        for off in ("-DZIGZAG_BUILD_TESTS=OFF", "-DZIGZAG_BUILD_BENCH=OFF"):
            self.assertIn(off, build)
        self.assertNotIn("ZIGZAG_WERROR=ON", build)
        # The builder copies only what the server's build reads: every add_subdirectory() that
        # CMakeLists.txt runs with the Dockerfile's options (tests and benchmarks off).
        copied = {rest.split()[0].rstrip("/") for k, rest in stages["builder"] if k == "COPY"
                  and not rest.startswith("--")}
        self.assertIn("CMakeLists.txt", copied)
        for subdir, condition in cmake_subdirectories():
            if condition is None or f"-D{condition}=ON" in build:
                self.assertIn(subdir, copied, f"the builder does not COPY {subdir}/")
            else:
                self.assertTrue(f"-D{condition}=OFF" in build or option_default_off(condition),
                                f"add_subdirectory({subdir}) under if({condition}), which the "
                                f"image build neither turns off nor copies")
        # libmicrohttpd serves /metrics: headers to build, the library to run.
        self.assertIn("libmicrohttpd-dev", build)
        runtime_runs = " ".join(r for k, r in stages["runtime"] if k == "RUN")
        self.assertIn("libmicrohttpd12", runtime_runs)

    def test_dockerignore_keeps_the_build_inputs(self):
        with open(repo(".dockerignore")) as f:
            patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        self.assertIn("!models/zigzag-tiny", patterns)
        for needed in ("CMakeLists.txt", "server", "core", "kernels", "proto", "tools", "scripts",
                       "deploy", "tests", "bench"):
            self.assertNotIn(needed, patterns, f".dockerignore drops {needed}")

    # Ports and probes --------------------------------------------------------------------------

    def check_ports(self, docs, where, grpc_port, metrics_port):
        pod, container = server_container(docs)
        args = args_dict(container["args"])
        self.assertEqual(int(args["port"]), grpc_port, where)
        self.assertEqual(int(args["metrics_port"]), metrics_port, where)
        self.assertEqual(args["host"], "0.0.0.0", where)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": grpc_port, "metrics": metrics_port}, where)
        with open(repo("server", "zigzag_server.h")) as f:
            ready = re.search(r'kEngineServiceName\[\] = "([^"]+)"', f.read()).group(1)
        tls = "tls_cert" in args
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertIn(probe, container, where)
            if tls:  # HTTP on the metrics port, paths the server serves
                self.assertNotIn("grpc", container[probe], f"{where} {probe}")
                self.assertEqual(container[probe]["httpGet"]["port"], "metrics", f"{where} {probe}")
                self.assertIn(container[probe]["httpGet"]["path"], self.http_health_paths,
                              f"{where} {probe}")
            else:
                self.assertEqual(container[probe]["grpc"]["port"], grpc_port, f"{where} {probe}")
                self.assertIn(container[probe]["grpc"]["service"], ("", ready), f"{where} {probe}")
        if tls:
            self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/livez")
            self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
            self.assertEqual(container["startupProbe"]["httpGet"]["path"], "/readyz")
        else:
            self.assertEqual(container["readinessProbe"]["grpc"]["service"], ready)
        annotations = pod["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            self.assertEqual(int(annotations["prometheus.io/port"]), metrics_port)
        for service in [d for d in docs if d["kind"] == "Service"]:
            for port in service["spec"]["ports"]:
                self.assertIn(port["targetPort"], ports, f"{where} Service targetPort")
        security = container["securityContext"]
        self.assertTrue(security["readOnlyRootFilesystem"])
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertTrue(pod["spec"]["securityContext"]["runAsNonRoot"])
        self.assertIn("/tmp", [m["mountPath"] for m in container["volumeMounts"]])

    def test_ports_match_server_defaults(self):
        _, docs = render([])
        self.check_ports(docs, "chart defaults", self.grpc_port, self.metrics_port)
        _, container = server_container(docs)
        self.assertEqual(container["resources"]["limits"]["nvidia.com/gpu"], 1)
        with open(repo(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        self.assertEqual(values["server"]["grpcPort"], self.grpc_port)
        self.assertEqual(values["server"]["metricsPort"], self.metrics_port)
        with open(repo("deploy", "kubernetes", "zigzag-serve.yaml")) as f:
            plain = [d for d in yaml.safe_load_all(f) if d]
        self.check_ports(plain, "deploy/kubernetes", self.grpc_port, self.metrics_port)

    def test_ports_follow_values(self):
        _, docs = render(VARIANTS["keda-initcontainer"])
        self.check_ports(docs, "ports 50052/9191", 50052, 9191)
        _, docs = render(VARIANTS["everything"])
        self.check_ports(docs, "everything", self.grpc_port, self.metrics_port)

    def test_liveness_outlasts_drain(self):
        with open(repo(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        drain = values["server"]["flags"]["drain-timeout"]
        seconds = float(re.fullmatch(r"(\d+)s", drain).group(1))
        live = values["probes"]["liveness"]
        self.assertGreater(live["periodSeconds"] * live["failureThreshold"], seconds)
        self.assertGreater(values["terminationGracePeriodSeconds"], seconds)

    # Generated files and metric names ----------------------------------------------------------

    def test_plain_manifests_match_the_chart(self):
        expected = render_chart.plain_manifests(repo(CHART))
        for fname, text in expected.items():
            path = repo("deploy", "kubernetes", fname)
            self.assertTrue(os.path.exists(path), f"{path} is missing")
            with open(path) as f:
                self.assertEqual(f.read(), text,
                                 f"{path} differs from the chart; regenerate: python3 "
                                 "deploy/tests/render_chart.py helm/zigzag-serve "
                                 "--write-manifests deploy/kubernetes")

    def test_metric_names_exist(self):
        known = metric_names_in_server()
        self.assertIn("zigzag_num_requests_waiting", known)
        with open(repo("deploy", "grafana", "zigzag-dashboard.json")) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        self.assertGreater(len(exprs), 15)
        sources = {"dashboard": " ".join(exprs)}
        with open(repo(CHART, "values.yaml")) as f:
            sources["values.yaml"] = f.read()
        for rel in ("templates/keda-scaledobject.yaml",):
            with open(repo(CHART, rel)) as f:
                sources[rel] = f.read()
        for rel in ("prometheus/prometheus-adapter-rules.yaml", "prometheus/scrape-config.yaml"):
            with open(repo("deploy", rel)) as f:
                sources[rel] = f.read()
        for where, text in sources.items():
            for name in re.findall(r"\b(zigzag_[a-z0-9_]+)", text):
                if name.startswith("zigzag_serve"):
                    continue
                self.assertIn(base_metric(name), known, f"{where} names unknown metric {name}")
        used = {base_metric(n) for n in re.findall(r"\b(zigzag_[a-z0-9_]+)", sources["dashboard"])}
        self.assertFalse(known - used, f"the dashboard shows no panel of {known - used}")

    def test_every_value_is_documented(self):
        free_form = {"imagePullSecrets", "model.pvc.accessModes", "model.initContainer.command",
                     "model.initContainer.resources", "server.extraArgs", "server.env",
                     "resources", "podSecurityContext", "securityContext", "podLabels",
                     "podAnnotations", "nodeSelector", "tolerations", "affinity",
                     "topologySpreadConstraints", "strategy", "service.annotations",
                     "serviceMonitor.labels", "autoscaling.metrics", "autoscaling.behavior"}
        with open(repo(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(repo(CHART, "README.md")) as f:
            readme = f.read()
        missing = []

        def walk(node, prefix):
            for key, value in node.items():
                path = f"{prefix}{key}"
                if path in free_form or not isinstance(value, dict) or not value:
                    if f"`{path}`" not in readme:
                        missing.append(path)
                else:
                    walk(value, path + ".")
        walk(values, "")
        self.assertFalse(missing, f"helm/zigzag-serve/README.md does not document {missing}")

    # The chart's flags on a real server --------------------------------------------------------

    def test_chart_default_flags_start_the_server(self):
        _, docs = render([])
        _, container = server_container(docs)
        # LocalServer sets model, host, ports and log level itself (loopback, free ports); a small
        # KV cache and the CPU backend fit a CI machine. Everything else is the chart's.
        own = {"model", "host", "port", "metrics_host", "metrics_port", "log_level",
               "kv_memory_mb", "backend"}
        args = [a for a in container["args"] if flag_name(a) not in own]
        model = support.test_model()
        log = os.path.join(PATHS.work_dir, "chart-flags-server.log")
        server = local_server.LocalServer(PATHS.server_binary, model,
                                          args + ["--kv-memory-mb=16", "--backend=cpu"],
                                          log_path=log, start_timeout=60, stop_timeout=20)
        with server:
            text = local_server.scrape(server.metrics_url)
            self.assertIn("zigzag_num_requests_waiting", text)
        self.assertEqual(server.process.returncode, 0, f"exit status; log {log}: "
                         + " ".join(shlex.quote(a) for a in server.command))


if __name__ == "__main__":
    support.main()
