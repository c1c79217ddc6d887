# The two set-up commands of the README: `make run` (main job) and `make test` (whole suite).
# Each creates .venv with the pinned stack first if needed (`make run` the runtime part only).
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
docs:
	bash tools/env.sh --dev
	.venv/bin/python tools/build_docs.py
