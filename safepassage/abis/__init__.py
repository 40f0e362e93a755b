"""The MOSIP ABIS adapter: MOSIP's registration processor asks, over a message queue, and this answers.

MOSIP (an identity platform) plugs in its biometric matcher as an ABIS: JSON requests arrive on a
queue of the deployment's ActiveMQ (``mosip-to-abis1``), answers go back on another
(``abis1-to-mosip``), in the JMS message type the request came in. The adapter is its own process
(``safepassage abis serve``) with its own data folder: a template store and one gallery for the
ABIS configuration, the transparency log every message goes into, and a job journal that makes
every request answered exactly once across restarts. Faces come from MOSIP's datashare: an HTTPS
GET with the partner's JWT, RSA-OAEP + AES-GCM encrypted, CBEFF XML holding ISO/IEC 19794-5
records (read by ``safepassage.travel_document``), embedded by the face pipeline the server runs.

The modules, in the order a message meets them: ``broker`` (STOMP), ``journal`` (exactly once),
``messages`` (the spec's schema and failure reasons), ``datashare`` and ``cbeff`` (the faces),
``references`` (the matcher), ``adapter`` (one message end to end), ``config`` and ``service``.
"""

from safepassage.abis.config import AbisConfig, load_abis_config
from safepassage.abis.errors import AbisError, AbisRefusal, FailureReason

__all__ = ["AbisConfig", "AbisError", "AbisRefusal", "FailureReason", "load_abis_config"]
