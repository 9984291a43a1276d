"""Imported by the ``forkserver`` the local cluster's workers are forked from, and only
there: the workers ignore SIGINT, so a Ctrl-C (which the terminal sends to every process
of the command) reaches the driver alone, which records what finished and closes the
cluster; each worker printed a KeyboardInterrupt traceback of its own before. Their
warning that the member they were running was cancelled, as the cluster closes, is not
printed either."""

import logging
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)  # the forkserver's children restore this disposition
logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)
