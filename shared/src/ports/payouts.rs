//! Payouts' view of the PSP (Connect): the seller's connected account, the transfer to it, its
//! payout to the bank, and the reversal of a bounced payout's transfer. Each call is
//! idempotent by the key its request carries.

use std::future::Future;

use crate::domain::payouts::{
    PspAccount, PspPayout, PspPayoutRequest, PspReversal, PspReversalRequest, PspTransfer, PspTransferRequest,
};
use crate::domain::psp::{PspAccountId, PspError};

pub trait PayoutPsp: Send + Sync {
    /// The connected account, or `None` if the PSP has no such account.
    fn account(&self, id: &PspAccountId)
        -> impl Future<Output = Result<Option<PspAccount>, PspError>> + Send;

    fn create_transfer(
        &self,
        request: &PspTransferRequest,
    ) -> impl Future<Output = Result<PspTransfer, PspError>> + Send;

    /// The payout, made as the connected account.
    fn create_payout(
        &self,
        request: &PspPayoutRequest,
    ) -> impl Future<Output = Result<PspPayout, PspError>> + Send;

    fn reverse_transfer(
        &self,
        request: &PspReversalRequest,
    ) -> impl Future<Output = Result<PspReversal, PspError>> + Send;
}
