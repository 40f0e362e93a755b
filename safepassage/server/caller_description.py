"""AccessService: who the service takes the caller to be, and what the authorisation matrix lets them do.

The console asks it on every page it serves: the answer says who is logged in (the certificate's
subject and role) and which pages to offer, and, being a call like any other, it is authenticated,
rate-limited and logged, so a revoked certificate is refused on the person's next request. It
offers; it never grants: each call is still decided on its own by the access interceptor.
"""

from __future__ import annotations

import grpc

from safepassage.api.v1 import access_pb2 as apb
from safepassage.api.v1 import access_pb2_grpc as apb_grpc
from safepassage.server.authorization import permissions
from safepassage.server.conversion import purpose_to_pb
from safepassage.server.identity import current_caller
from safepassage.server.pki_folder import format_serial

__all__ = ["AccessServicer"]


class AccessServicer(apb_grpc.AccessServiceServicer):
    def DescribeCaller(
        self, request: apb.DescribeCallerRequest, context: grpc.ServicerContext
    ) -> apb.CallerDescription:
        caller = current_caller()
        return apb.CallerDescription(
            client_id=caller.client_id,
            role=caller.role.value,
            organisation=caller.organisation,
            certificate_serial=format_serial(caller.serial),
            via=caller.via,
            permissions=[
                apb.Permission(
                    operation=operation.value,
                    purposes=sorted(purpose_to_pb(purpose) for purpose in purposes),
                )
                for operation, purposes in sorted(permissions(caller).items())
            ],
        )
