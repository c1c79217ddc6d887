# The two set-up commands of the README: `make run` (main job) and `make test` (whole suite).
# Each creates .venv with the pinned stack first if needed.
.PHONY: run quick test slow docs env
env:
	bash tools/env.sh
run: env
	.venv/bin/rbnb run $(ARGS)
quick: env
	.venv/bin/rbnb run --quick $(ARGS)
test:
	bash tools/test.sh
slow:
	bash tools/test.sh --slow
docs: env
	.venv/bin/python tools/build_docs.py
