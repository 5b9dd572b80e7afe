//! Pay-in (design §3, §6, §11): checkouts and their payment orders, the state machine they
//! share, and the PSP session they are paid through.

pub mod checkout;
pub mod session;
pub mod status;

pub use checkout::{
    Checkout, CheckoutForm, CheckoutRequest, LineItem, OrderRefunds, PaymentOrder, LINE_ITEMS_MAX,
};
pub use session::{PspNotice, PspSession, SessionOutcome, SessionRequest};
pub use status::{IllegalTransition, PaymentEvent, PaymentStatus};
