"""What the ``forkserver`` the local cluster's workers are forked from sets for them: it
imports this module, with ``FLUIDGRAD_FORKSERVER=1`` in its environment (imported
anywhere else, the module does nothing).

* The workers ignore SIGINT, so a Ctrl-C (which the terminal sends to every process of
  the command) reaches the driver alone, which records what finished and closes the
  cluster; each worker printed a KeyboardInterrupt traceback of its own before. (A process
  that ignores SIGINT passes that on to every program it starts: hence the flag.)
* Their warning that the member they were running was cancelled, as the cluster closes,
  is not printed."""

import logging
import os
import signal

if os.environ.pop("FLUIDGRAD_FORKSERVER", None) == "1":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the forkserver's children restore this disposition
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)
