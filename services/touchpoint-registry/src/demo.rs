//! The demo registry: the touchpoints and journeys of a mid-sized retail bank, loaded by
//! `cxhub serve --demo` (when the database is empty) and by `cxhub demo-seed`.
//!
//! The catalogue is a table of *areas* (a root main touchpoint per channel or business area),
//! each with *groups* (main touchpoints below the root) holding *steps* (sub-touchpoints).
//! Keys are built from the table: `area`, `area.group`, `area.group.step`, so every parent is
//! named by `parent_key` and comes before its children in [`touchpoints`].

use cxhub_proto::touchpoint::v1::{
    Channel, IntendedExperience, Journey, JourneyMapStage, JourneyStage, Touchpoint,
};

use Channel as C;
use JourneyStage as S;

/// A root main touchpoint: a channel or business area, with its groups.
struct Area {
    key: &'static str,
    name: &'static str,
    description: &'static str,
    channel: Channel,
    stage: JourneyStage,
    department: &'static str,
    segment: &'static str,
    groups: &'static [Group],
}

/// A main touchpoint below an area, with its steps.
struct Group {
    key: &'static str,
    name: &'static str,
    channel: Channel,
    stage: JourneyStage,
    /// The owning department when it is not the area's.
    department: Option<&'static str>,
    targets: Option<Targets>,
    steps: &'static [Step],
}

/// A sub-touchpoint.
struct Step {
    key: &'static str,
    name: &'static str,
    stage: JourneyStage,
    /// The channel when it is not the group's.
    channel: Option<Channel>,
}

/// Intended experience of a group: target NPS, CSAT (%) and CES (1–7).
#[derive(Clone, Copy)]
struct Targets {
    nps: Option<i32>,
    csat: Option<f64>,
    ces: Option<f64>,
}

const fn step(key: &'static str, name: &'static str, stage: JourneyStage) -> Step {
    Step {
        key,
        name,
        stage,
        channel: None,
    }
}

const fn via(key: &'static str, name: &'static str, stage: JourneyStage, channel: Channel) -> Step {
    Step {
        key,
        name,
        stage,
        channel: Some(channel),
    }
}

/// All three targets.
const fn targets(nps: i32, csat: f64, ces: f64) -> Option<Targets> {
    Some(Targets {
        nps: Some(nps),
        csat: Some(csat),
        ces: Some(ces),
    })
}

/// A target NPS only.
const fn nps(nps: i32) -> Option<Targets> {
    Some(Targets {
        nps: Some(nps),
        csat: None,
        ces: None,
    })
}

/// A target CSAT and CES, no NPS (service moments rather than relationship moments).
const fn service(csat: f64, ces: f64) -> Option<Targets> {
    Some(Targets {
        nps: None,
        csat: Some(csat),
        ces: Some(ces),
    })
}

// A table: one row per line reads better than rustfmt's vertical layout of each call.
#[rustfmt::skip]
static AREAS: &[Area] = &[
    Area {
        key: "marketing", name: "Marketing and brand", channel: C::Other, stage: S::Awareness, department: "marketing", segment: "retail",
        description: "Where people first hear of the bank: campaigns, search, social media and direct mail.",
        groups: &[
            Group { key: "campaigns", name: "Brand campaigns", channel: C::Other, stage: S::Awareness, department: None, targets: None,
                steps: &[
                    step("tv-advert", "TV advert", S::Awareness),
                    step("outdoor-billboard", "Outdoor billboard", S::Awareness),
                    step("sports-sponsorship", "Sports sponsorship", S::Awareness),
                ],
            },
            Group { key: "social", name: "Social media", channel: C::Social, stage: S::Awareness, department: None, targets: nps(20),
                steps: &[
                    step("brand-post", "Brand account post", S::Awareness),
                    step("paid-social-ad", "Paid social advert", S::Awareness),
                    step("public-question-reply", "Reply to a public question", S::Support),
                    step("review-reply", "Reply to a review", S::Advocacy),
                ],
            },
            Group { key: "search", name: "Search and display", channel: C::Web, stage: S::Awareness, department: None, targets: None,
                steps: &[
                    step("paid-search-ad", "Paid search advert", S::Awareness),
                    step("organic-search-result", "Organic search result", S::Awareness),
                    via("comparison-site-listing", "Comparison site listing", S::Consideration, C::Partner),
                ],
            },
            Group { key: "email", name: "Marketing e-mail", channel: C::Email, stage: S::Consideration, department: None, targets: None,
                steps: &[
                    step("newsletter", "Monthly newsletter", S::Awareness),
                    step("product-offer", "Product offer e-mail", S::Consideration),
                    step("win-back", "Win-back e-mail", S::Renewal),
                ],
            },
            Group { key: "direct-mail", name: "Direct mail", channel: C::Letter, stage: S::Consideration, department: None, targets: None,
                steps: &[
                    step("pre-approved-card-offer", "Pre-approved card offer", S::Consideration),
                    step("mortgage-mailer", "Mortgage mailer", S::Consideration),
                ],
            },
        ],
    },
    Area {
        key: "website", name: "Public website", channel: C::Web, stage: S::Consideration, department: "digital", segment: "retail",
        description: "The public website: product pages, calculators, applications and the help centre.",
        groups: &[
            Group { key: "products", name: "Product pages", channel: C::Web, stage: S::Consideration, department: None, targets: service(80.0, 6.0),
                steps: &[
                    step("homepage", "Homepage", S::Awareness),
                    step("current-accounts", "Current accounts page", S::Consideration),
                    step("credit-cards", "Credit cards page", S::Consideration),
                    step("loans", "Personal loans page", S::Consideration),
                    step("rate-table", "Interest rate table", S::Consideration),
                ],
            },
            Group { key: "calculators", name: "Calculators and eligibility checks", channel: C::Web, stage: S::Consideration, department: None, targets: service(85.0, 6.2),
                steps: &[
                    step("mortgage-calculator", "Mortgage calculator", S::Consideration),
                    step("loan-calculator", "Loan calculator", S::Consideration),
                    step("card-eligibility", "Credit card eligibility checker", S::Consideration),
                ],
            },
            Group { key: "apply", name: "Online applications", channel: C::Web, stage: S::Purchase, department: None, targets: targets(40, 85.0, 6.0),
                steps: &[
                    step("current-account", "Current account application", S::Purchase),
                    step("credit-card", "Credit card application", S::Purchase),
                    step("mortgage-agreement-in-principle", "Mortgage agreement in principle", S::Purchase),
                    step("application-tracker", "Application status tracker", S::Onboarding),
                ],
            },
            Group { key: "help", name: "Help centre", channel: C::Web, stage: S::Support, department: None, targets: service(75.0, 5.5),
                steps: &[
                    step("faq-search", "FAQ search", S::Support),
                    step("branch-finder", "Branch and ATM finder", S::Support),
                    step("service-status", "Service status page", S::Support),
                    step("fraud-advice", "Fraud and scam advice", S::Support),
                ],
            },
        ],
    },
    Area {
        key: "online-banking", name: "Online banking", channel: C::Web, stage: S::Usage, department: "digital", segment: "retail",
        description: "Signed-in banking in the browser for everyday money management.",
        groups: &[
            Group { key: "login", name: "Log in", channel: C::Web, stage: S::Usage, department: None, targets: service(90.0, 6.5),
                steps: &[
                    step("password-login", "Password log-in", S::Usage),
                    step("two-factor-challenge", "Two-factor challenge", S::Usage),
                    step("password-reset", "Password reset", S::Support),
                ],
            },
            Group { key: "accounts", name: "Accounts overview", channel: C::Web, stage: S::Usage, department: None, targets: None,
                steps: &[
                    step("balance-overview", "Balance overview", S::Usage),
                    step("transaction-history", "Transaction history", S::Usage),
                    step("statement-download", "Statement download", S::Billing),
                ],
            },
            Group { key: "payments", name: "Payments", channel: C::Web, stage: S::Usage, department: Some("payments"), targets: service(88.0, 6.3),
                steps: &[
                    step("domestic-transfer", "Domestic transfer", S::Usage),
                    step("international-transfer", "International transfer", S::Usage),
                    step("direct-debits", "Direct debit management", S::Usage),
                    step("bill-payment", "Bill payment", S::Billing),
                ],
            },
            Group { key: "servicing", name: "Self-service changes", channel: C::Web, stage: S::Support, department: None, targets: None,
                steps: &[
                    step("change-address", "Change of address", S::Support),
                    step("secure-message", "Secure message to the bank", S::Support),
                    step("document-upload", "Document upload", S::Support),
                ],
            },
        ],
    },
    Area {
        key: "mobile-app", name: "Mobile banking app", channel: C::MobileApp, stage: S::Usage, department: "digital", segment: "retail",
        description: "The bank's app for iOS and Android: registration, everyday banking, cards and help.",
        groups: &[
            Group { key: "registration", name: "App registration", channel: C::MobileApp, stage: S::Onboarding, department: None, targets: targets(45, 88.0, 6.2),
                steps: &[
                    via("store-listing", "App store listing", S::Consideration, C::Other),
                    step("sign-up", "Sign-up", S::Onboarding),
                    step("selfie-id-check", "Selfie identity check", S::Onboarding),
                    step("biometric-setup", "Biometric log-in set-up", S::Onboarding),
                    step("first-login-tour", "First log-in tour", S::Onboarding),
                ],
            },
            Group { key: "everyday", name: "Everyday banking", channel: C::MobileApp, stage: S::Usage, department: None, targets: targets(50, 90.0, 6.5),
                steps: &[
                    step("balance-glance", "Balance at a glance", S::Usage),
                    step("instant-payment", "Instant payment", S::Usage),
                    step("savings-pots", "Savings pots", S::Usage),
                    step("spending-insights", "Spending insights", S::Usage),
                    step("push-notification", "Transaction push notification", S::Usage),
                ],
            },
            Group { key: "cards", name: "Card controls", channel: C::MobileApp, stage: S::Usage, department: Some("cards"), targets: service(90.0, 6.6),
                steps: &[
                    step("card-freeze", "Freeze and unfreeze a card", S::Support),
                    step("spending-limits", "Spending limits", S::Usage),
                    step("add-to-wallet", "Add card to mobile wallet", S::Onboarding),
                    step("replace-card", "Order a replacement card", S::Support),
                ],
            },
            Group { key: "help", name: "In-app help", channel: C::MobileApp, stage: S::Support, department: None, targets: service(80.0, 5.8),
                steps: &[
                    step("help-search", "Help search", S::Support),
                    step("report-fraud", "Report fraud", S::Support),
                    step("dispute-transaction", "Dispute a transaction", S::Support),
                    step("rating-prompt", "App rating prompt", S::Advocacy),
                ],
            },
            Group { key: "offers", name: "Personalised offers", channel: C::MobileApp, stage: S::Renewal, department: Some("marketing"), targets: None,
                steps: &[
                    step("personal-offer", "Personalised offer card", S::Consideration),
                    step("loan-top-up", "Loan top-up offer", S::Renewal),
                    step("refer-a-friend", "Refer a friend", S::Advocacy),
                ],
            },
        ],
    },
    Area {
        key: "branch", name: "Branch network", channel: C::Store, stage: S::Usage, department: "retail-banking", segment: "retail",
        description: "Visits to a branch: the welcome, the teller counter, advice rooms and the service desk.",
        groups: &[
            Group { key: "reception", name: "Branch reception", channel: C::Store, stage: S::Usage, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("greeter-welcome", "Greeter welcome", S::Usage),
                    step("queue-ticket", "Queue ticket", S::Usage),
                    step("self-service-zone", "Self-service zone", S::Usage),
                ],
            },
            Group { key: "teller", name: "Teller counter", channel: C::Store, stage: S::Usage, department: None, targets: service(88.0, 6.2),
                steps: &[
                    step("cash-deposit", "Cash deposit", S::Usage),
                    step("cash-withdrawal", "Cash withdrawal", S::Usage),
                    step("cheque-deposit", "Cheque deposit", S::Usage),
                    step("bill-payment", "Bill payment at the counter", S::Billing),
                ],
            },
            Group { key: "advice", name: "Advice appointments", channel: C::Store, stage: S::Consideration, department: None, targets: targets(55, 90.0, 6.0),
                steps: &[
                    step("appointment-booking", "Appointment booking", S::Consideration),
                    step("account-opening-meeting", "Account opening meeting", S::Purchase),
                    step("loan-consultation", "Loan consultation", S::Consideration),
                    step("financial-health-check", "Financial health check", S::Usage),
                ],
            },
            Group { key: "service-desk", name: "Service desk", channel: C::Store, stage: S::Support, department: None, targets: service(82.0, 5.5),
                steps: &[
                    step("lost-card", "Lost card report", S::Support),
                    step("power-of-attorney", "Power of attorney registration", S::Support),
                    step("bereavement", "Bereavement support", S::Support),
                    step("account-closure", "Account closure", S::Return),
                ],
            },
            Group { key: "business-counter", name: "Business counter", channel: C::Store, stage: S::Usage, department: Some("business-banking"), targets: None,
                steps: &[
                    step("business-cash-deposit", "Business cash deposit", S::Usage),
                    step("night-safe", "Night safe", S::Usage),
                ],
            },
        ],
    },
    Area {
        key: "atm", name: "ATMs and kiosks", channel: C::AtmKiosk, stage: S::Usage, department: "self-service", segment: "retail",
        description: "Cash machines and self-service kiosks in branches and on the street.",
        groups: &[
            Group { key: "cash", name: "Cash services", channel: C::AtmKiosk, stage: S::Usage, department: None, targets: service(92.0, 6.7),
                steps: &[
                    step("withdrawal", "Cash withdrawal", S::Usage),
                    step("cardless-withdrawal", "Cardless withdrawal", S::Usage),
                    step("deposit", "Cash deposit", S::Usage),
                    step("balance-enquiry", "Balance enquiry", S::Usage),
                ],
            },
            Group { key: "services", name: "ATM services", channel: C::AtmKiosk, stage: S::Usage, department: None, targets: None,
                steps: &[
                    step("pin-change", "PIN change", S::Usage),
                    step("bill-payment", "Bill payment", S::Billing),
                    step("card-retained", "Card retained by the machine", S::Support),
                    step("out-of-service", "Out-of-service screen", S::Support),
                ],
            },
            Group { key: "kiosk", name: "Branch kiosk", channel: C::AtmKiosk, stage: S::Usage, department: None, targets: None,
                steps: &[
                    step("statement-print", "Statement print", S::Billing),
                    step("video-teller", "Video teller", S::Support),
                ],
            },
        ],
    },
    Area {
        key: "contact-centre", name: "Contact centre", channel: C::Phone, stage: S::Support, department: "contact-centre", segment: "retail",
        description: "Phone calls in and out: the voice menu, service and fraud lines, sales and retention.",
        groups: &[
            Group { key: "ivr", name: "Voice menu", channel: C::Phone, stage: S::Support, department: None, targets: service(70.0, 5.0),
                steps: &[
                    step("main-menu", "Main menu", S::Support),
                    step("caller-identification", "Caller identification", S::Support),
                    step("card-activation-line", "Card activation line", S::Onboarding),
                    step("callback-offer", "Queue callback offer", S::Support),
                ],
            },
            Group { key: "service-line", name: "Service line", channel: C::Phone, stage: S::Support, department: None, targets: targets(30, 85.0, 5.5),
                steps: &[
                    step("general-enquiry", "General enquiry", S::Support),
                    step("payment-query", "Payment query", S::Support),
                    step("statement-query", "Statement query", S::Billing),
                    step("vulnerable-customer", "Vulnerable customer support", S::Support),
                    step("department-transfer", "Transfer to a specialist department", S::Support),
                ],
            },
            Group { key: "correspondence", name: "Written correspondence", channel: C::Email, stage: S::Support, department: None, targets: service(80.0, 5.5),
                steps: &[
                    step("email", "E-mail exchange with a customer", S::Support),
                    via("letter", "Letter exchange with a customer", S::Support, C::Letter),
                ],
            },
            Group { key: "fraud-line", name: "Fraud line", channel: C::Phone, stage: S::Support, department: Some("fraud-operations"), targets: service(90.0, 6.0),
                steps: &[
                    step("suspicious-transaction", "Suspicious transaction call", S::Support),
                    step("card-block", "Card block", S::Support),
                    step("scam-victim-support", "Scam victim support", S::Support),
                    step("outbound-fraud-alert", "Outbound fraud alert", S::Usage),
                ],
            },
            Group { key: "sales-line", name: "Sales line", channel: C::Phone, stage: S::Purchase, department: None, targets: nps(35),
                steps: &[
                    step("first-sales-call", "First sales call", S::Consideration),
                    step("loan-quote", "Loan quote by phone", S::Purchase),
                    step("card-upgrade", "Card upgrade call", S::Renewal),
                ],
            },
            Group { key: "retention", name: "Retention desk", channel: C::Phone, stage: S::Renewal, department: Some("customer-experience"), targets: nps(10),
                steps: &[
                    step("closure-request", "Account closure request", S::Return),
                    step("retention-offer", "Retention offer", S::Renewal),
                    step("detractor-follow-up", "Detractor follow-up call", S::Advocacy),
                ],
            },
        ],
    },
    Area {
        key: "chat", name: "Chat and messaging", channel: C::Chat, stage: S::Support, department: "contact-centre", segment: "retail",
        description: "The virtual assistant, live chat with an agent and messaging apps.",
        groups: &[
            Group { key: "assistant", name: "Virtual assistant", channel: C::Chat, stage: S::Support, department: Some("digital"), targets: service(70.0, 5.5),
                steps: &[
                    step("faq-answer", "FAQ answer", S::Support),
                    step("lost-card-flow", "Lost card flow", S::Support),
                    step("payment-status-flow", "Payment status flow", S::Usage),
                    step("handover-to-agent", "Hand-over to an agent", S::Support),
                ],
            },
            Group { key: "live-chat", name: "Live chat", channel: C::Chat, stage: S::Support, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("agent-chat", "Chat with an agent", S::Support),
                    step("document-request", "Document request", S::Onboarding),
                    via("transcript-email", "Chat transcript e-mail", S::Support, C::Email),
                ],
            },
            Group { key: "messaging", name: "Messaging apps", channel: C::Chat, stage: S::Support, department: None, targets: None,
                steps: &[
                    step("messenger-service", "Service over a messaging app", S::Support),
                    step("proactive-alert", "Proactive alert", S::Usage),
                ],
            },
        ],
    },
    Area {
        key: "cards", name: "Cards", channel: C::Other, stage: S::Usage, department: "cards", segment: "retail",
        description: "Debit and credit cards from delivery to everyday use, statements and disputes.",
        groups: &[
            Group { key: "delivery", name: "Card delivery", channel: C::FieldService, stage: S::Delivery, department: None, targets: service(90.0, 6.5),
                steps: &[
                    step("doorstep-id-check", "Doorstep identity check", S::Delivery),
                    step("card-handover", "Card hand-over", S::Delivery),
                    via("failed-delivery-notice", "Failed delivery notice", S::Delivery, C::Letter),
                ],
            },
            Group { key: "mailing", name: "Card mailings", channel: C::Letter, stage: S::Delivery, department: None, targets: None,
                steps: &[
                    step("card-carrier", "Card carrier letter", S::Delivery),
                    step("pin-mailer", "PIN mailer", S::Delivery),
                    step("welcome-pack", "Welcome pack", S::Onboarding),
                    step("renewal-card", "Renewal card mailing", S::Renewal),
                ],
            },
            Group { key: "acceptance", name: "Card payments at merchants", channel: C::Partner, stage: S::Usage, department: Some("payments"), targets: service(95.0, 6.8),
                steps: &[
                    step("contactless-payment", "Contactless payment", S::Usage),
                    via("online-checkout-3ds", "Online checkout with 3-D Secure", S::Usage, C::Web),
                    step("foreign-transaction", "Payment abroad", S::Usage),
                    step("declined-payment", "Declined payment", S::Support),
                ],
            },
            Group { key: "statements", name: "Credit card statements", channel: C::Email, stage: S::Billing, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("monthly-statement", "Monthly statement", S::Billing),
                    step("payment-due-reminder", "Payment due reminder", S::Billing),
                    step("limit-increase-offer", "Credit limit increase offer", S::Renewal),
                ],
            },
            Group { key: "disputes", name: "Card disputes", channel: C::Phone, stage: S::Support, department: None, targets: targets(0, 75.0, 4.5),
                steps: &[
                    step("dispute-intake", "Dispute intake", S::Support),
                    via("evidence-upload", "Evidence upload", S::Support, C::Web),
                    via("provisional-credit", "Provisional credit notice", S::Support, C::Email),
                    via("merchant-response", "Merchant response review", S::Support, C::Partner),
                    via("dispute-outcome", "Dispute outcome letter", S::Support, C::Letter),
                ],
            },
        ],
    },
    Area {
        key: "mortgages", name: "Mortgages", channel: C::Other, stage: S::Purchase, department: "mortgages", segment: "retail",
        description: "Home loans: brokers, advice, application, valuation, completion and remortgage.",
        groups: &[
            Group { key: "brokers", name: "Mortgage brokers", channel: C::Partner, stage: S::Consideration, department: Some("intermediary-sales"), targets: nps(30),
                steps: &[
                    step("broker-referral", "Broker referral", S::Consideration),
                    step("broker-submission", "Broker portal submission", S::Purchase),
                ],
            },
            Group { key: "advice", name: "Mortgage advice", channel: C::Phone, stage: S::Consideration, department: None, targets: targets(50, 90.0, 5.5),
                steps: &[
                    step("fact-find", "Initial fact-find", S::Consideration),
                    step("affordability-assessment", "Affordability assessment", S::Consideration),
                    step("product-recommendation", "Product recommendation", S::Consideration),
                    via("home-visit", "Adviser home visit", S::Consideration, C::FieldService),
                ],
            },
            Group { key: "application", name: "Mortgage application", channel: C::Web, stage: S::Purchase, department: None, targets: targets(40, 80.0, 4.5),
                steps: &[
                    step("online-application", "Online application", S::Purchase),
                    step("document-upload", "Document upload", S::Purchase),
                    step("application-tracker", "Application tracker", S::Purchase),
                    via("offer-letter", "Mortgage offer letter", S::Purchase, C::Letter),
                ],
            },
            Group { key: "valuation", name: "Property valuation", channel: C::FieldService, stage: S::Delivery, department: None, targets: None,
                steps: &[
                    via("valuation-booking", "Valuation booking", S::Delivery, C::Phone),
                    step("surveyor-visit", "Surveyor visit", S::Delivery),
                    via("valuation-report", "Valuation report", S::Delivery, C::Email),
                ],
            },
            Group { key: "completion", name: "Completion", channel: C::Letter, stage: S::Delivery, department: None, targets: nps(60),
                steps: &[
                    via("solicitor-instruction", "Solicitor instruction", S::Delivery, C::Partner),
                    step("funds-release", "Funds release", S::Delivery),
                    step("welcome-letter", "Welcome to your mortgage letter", S::Onboarding),
                ],
            },
            Group { key: "servicing", name: "Mortgage servicing", channel: C::Email, stage: S::Billing, department: None, targets: None,
                steps: &[
                    via("annual-statement", "Annual mortgage statement", S::Billing, C::Letter),
                    step("rate-change-notice", "Rate change notice", S::Billing),
                    via("payment-holiday", "Payment holiday request", S::Support, C::Phone),
                ],
            },
            Group { key: "remortgage", name: "Remortgage and redemption", channel: C::Email, stage: S::Renewal, department: None, targets: nps(35),
                steps: &[
                    step("product-expiry-reminder", "Product expiry reminder", S::Renewal),
                    step("product-transfer-offer", "Product transfer offer", S::Renewal),
                    via("retention-call", "Remortgage retention call", S::Renewal, C::Phone),
                    via("redemption-statement", "Redemption statement", S::Return, C::Letter),
                ],
            },
        ],
    },
    Area {
        key: "loans", name: "Personal loans", channel: C::Web, stage: S::Purchase, department: "lending", segment: "retail",
        description: "Unsecured personal loans from quote to settlement.",
        groups: &[
            Group { key: "application", name: "Loan application", channel: C::Web, stage: S::Purchase, department: None, targets: targets(40, 85.0, 6.0),
                steps: &[
                    step("eligibility-quote", "Personalised rate quote", S::Consideration),
                    step("loan-application", "Loan application", S::Purchase),
                    step("e-signature", "Electronic signature", S::Purchase),
                    step("funds-disbursement", "Funds paid out", S::Delivery),
                ],
            },
            Group { key: "servicing", name: "Loan servicing", channel: C::Email, stage: S::Billing, department: None, targets: None,
                steps: &[
                    step("repayment-schedule", "Repayment schedule", S::Billing),
                    step("repayment-reminder", "Repayment reminder", S::Billing),
                    via("settlement-quote", "Early settlement quote", S::Return, C::Web),
                ],
            },
        ],
    },
    Area {
        key: "onboarding", name: "Account opening", channel: C::Other, stage: S::Onboarding, department: "retail-banking", segment: "retail",
        description: "From a signed application to a customer who uses the account: identity checks, welcome, switching.",
        groups: &[
            Group { key: "kyc", name: "Identity checks", channel: C::Web, stage: S::Onboarding, department: Some("financial-crime"), targets: service(80.0, 5.0),
                steps: &[
                    step("id-document-upload", "Identity document upload", S::Onboarding),
                    via("video-identification", "Video identification", S::Onboarding, C::MobileApp),
                    via("information-request", "Request for more information", S::Onboarding, C::Email),
                ],
            },
            Group { key: "welcome", name: "Welcome", channel: C::Email, stage: S::Onboarding, department: None, targets: nps(50),
                steps: &[
                    step("welcome-email", "Welcome e-mail", S::Onboarding),
                    via("welcome-call", "Welcome call", S::Onboarding, C::Phone),
                    via("online-banking-activation", "Online banking activation", S::Onboarding, C::Web),
                ],
            },
            Group { key: "switching", name: "Current account switch", channel: C::Letter, stage: S::Onboarding, department: None, targets: service(90.0, 6.5),
                steps: &[
                    step("switch-confirmation", "Switch confirmation", S::Onboarding),
                    step("payments-moved-notice", "Payments moved notice", S::Onboarding),
                ],
            },
        ],
    },
    Area {
        key: "collections", name: "Collections and recoveries", channel: C::Phone, stage: S::Billing, department: "collections", segment: "retail",
        description: "Customers behind on payments: early arrears, financial difficulty and recoveries.",
        groups: &[
            Group { key: "early-arrears", name: "Early arrears", channel: C::Letter, stage: S::Billing, department: None, targets: service(60.0, 4.5),
                steps: &[
                    step("arrears-letter", "Missed payment letter", S::Billing),
                    via("arrears-email", "Missed payment e-mail", S::Billing, C::Email),
                    via("arrangement-call", "Payment arrangement call", S::Billing, C::Phone),
                    via("self-service-arrangement", "Online payment arrangement", S::Billing, C::Web),
                ],
            },
            Group { key: "hardship", name: "Financial difficulty", channel: C::Phone, stage: S::Support, department: None, targets: service(75.0, 5.0),
                steps: &[
                    step("difficulty-referral", "Financial difficulty referral", S::Support),
                    step("income-expenditure", "Income and expenditure review", S::Support),
                    via("debt-advice-referral", "Referral to free debt advice", S::Support, C::Partner),
                    via("forbearance-agreement", "Forbearance agreement", S::Support, C::Letter),
                ],
            },
            Group { key: "recoveries", name: "Recoveries", channel: C::Letter, stage: S::Billing, department: None, targets: None,
                steps: &[
                    step("default-notice", "Default notice", S::Billing),
                    via("agency-placement", "Placement with a collection agency", S::Billing, C::Partner),
                ],
            },
        ],
    },
    Area {
        key: "complaints", name: "Complaints", channel: C::Other, stage: S::Support, department: "complaints", segment: "retail",
        description: "Complaints through every channel, their handling and the follow-up.",
        groups: &[
            Group { key: "intake", name: "Complaint intake", channel: C::Phone, stage: S::Support, department: None, targets: service(70.0, 4.5),
                steps: &[
                    step("complaint-call", "Complaint call", S::Support),
                    via("web-form", "Complaint web form", S::Support, C::Web),
                    via("complaint-letter", "Complaint letter", S::Support, C::Letter),
                    via("in-branch", "Complaint in a branch", S::Support, C::Store),
                    via("social-complaint", "Complaint on social media", S::Support, C::Social),
                ],
            },
            Group { key: "handling", name: "Complaint handling", channel: C::Email, stage: S::Support, department: None, targets: service(65.0, 4.0),
                steps: &[
                    step("acknowledgement", "Acknowledgement", S::Support),
                    step("investigation-update", "Investigation update", S::Support),
                    via("final-response", "Final response letter", S::Support, C::Letter),
                    step("redress-payment", "Redress payment", S::Billing),
                ],
            },
            Group { key: "follow-up", name: "Complaint follow-up", channel: C::Phone, stage: S::Advocacy, department: Some("customer-experience"), targets: nps(0),
                steps: &[
                    step("satisfaction-callback", "Satisfaction callback", S::Advocacy),
                    via("lessons-survey", "Complaint experience survey", S::Advocacy, C::Email),
                ],
            },
        ],
    },
    Area {
        key: "business", name: "Business banking", channel: C::Other, stage: S::Usage, department: "business-banking", segment: "business",
        description: "Small and medium business customers: relationship managers, merchant services and business online banking.",
        groups: &[
            Group { key: "onboarding", name: "Business account opening", channel: C::Web, stage: S::Onboarding, department: None, targets: service(75.0, 4.5),
                steps: &[
                    step("business-application", "Business account application", S::Purchase),
                    step("company-verification", "Company verification", S::Onboarding),
                ],
            },
            Group { key: "relationship", name: "Relationship management", channel: C::FieldService, stage: S::Usage, department: None, targets: nps(45),
                steps: &[
                    step("manager-visit", "Relationship manager visit", S::Consideration),
                    step("annual-review", "Annual review", S::Renewal),
                    via("facility-renewal", "Credit facility renewal", S::Renewal, C::Letter),
                ],
            },
            Group { key: "merchant-services", name: "Merchant services", channel: C::Partner, stage: S::Delivery, department: Some("merchant-services"), targets: service(85.0, 5.8),
                steps: &[
                    via("terminal-installation", "Card terminal installation", S::Delivery, C::FieldService),
                    via("terminal-support", "Card terminal support", S::Support, C::Phone),
                    via("settlement-report", "Settlement report", S::Billing, C::Email),
                ],
            },
            Group { key: "online", name: "Business online banking", channel: C::Web, stage: S::Usage, department: Some("digital"), targets: service(85.0, 5.8),
                steps: &[
                    step("bulk-payments", "Bulk payments", S::Usage),
                    step("payroll-upload", "Payroll upload", S::Usage),
                    step("fee-statement", "Business fee statement", S::Billing),
                ],
            },
        ],
    },
    Area {
        key: "wealth", name: "Private banking and investments", channel: C::Store, stage: S::Consideration, department: "wealth-management", segment: "private",
        description: "Private banking clients and investors: advice, portfolio reviews and reporting.",
        groups: &[
            Group { key: "advice", name: "Investment advice", channel: C::Store, stage: S::Consideration, department: None, targets: nps(60),
                steps: &[
                    step("banker-meeting", "Private banker meeting", S::Consideration),
                    via("risk-questionnaire", "Risk profile questionnaire", S::Consideration, C::Web),
                    step("investment-proposal", "Investment proposal", S::Purchase),
                    step("portfolio-review", "Portfolio review", S::Renewal),
                ],
            },
            Group { key: "reporting", name: "Investment reporting", channel: C::Letter, stage: S::Billing, department: None, targets: None,
                steps: &[
                    step("quarterly-valuation", "Quarterly valuation", S::Usage),
                    step("fee-statement", "Fee statement", S::Billing),
                ],
            },
        ],
    },
    Area {
        key: "insurance", name: "Insurance", channel: C::Partner, stage: S::Purchase, department: "bancassurance", segment: "retail",
        description: "Insurance sold with the bank's products and serviced by the insurance partner.",
        groups: &[
            Group { key: "policies", name: "Insurance policies", channel: C::Partner, stage: S::Purchase, department: None, targets: nps(25),
                steps: &[
                    step("travel-insurance", "Travel insurance purchase", S::Purchase),
                    step("claim-notification", "Claim notification", S::Support),
                    step("claim-settlement", "Claim settlement", S::Billing),
                    step("policy-renewal", "Policy renewal", S::Renewal),
                    step("policy-cancellation", "Policy cancellation", S::Return),
                ],
            },
        ],
    },
    Area {
        key: "orders", name: "Orders and deliveries", channel: C::Other, stage: S::Purchase, department: "operations", segment: "retail",
        description: "What customers order from the bank (travel money, card readers, cheque books, card terminals), its delivery and its returns.",
        groups: &[
            Group { key: "checkout", name: "Ordering", channel: C::Web, stage: S::Purchase, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("web-checkout", "Online checkout", S::Purchase),
                    via("app-checkout", "In-app checkout", S::Purchase, C::MobileApp),
                    via("branch-order", "Order at a branch", S::Purchase, C::Store),
                    via("phone-order", "Order by phone", S::Purchase, C::Phone),
                ],
            },
            Group { key: "delivery", name: "Delivery", channel: C::FieldService, stage: S::Delivery, department: None, targets: service(90.0, 6.5),
                steps: &[
                    via("dispatch-notice", "Dispatch notice", S::Delivery, C::Email),
                    step("courier-delivery", "Courier delivery", S::Delivery),
                    via("branch-collection", "Collection at a branch", S::Delivery, C::Store),
                    step("failed-delivery", "Failed delivery attempt", S::Delivery),
                ],
            },
            Group { key: "returns", name: "Returns", channel: C::Other, stage: S::Return, department: None, targets: service(80.0, 5.5),
                steps: &[
                    via("return-request", "Return request", S::Return, C::Web),
                    via("branch-return", "Return at a branch", S::Return, C::Store),
                    via("courier-pickup", "Courier pick-up", S::Return, C::FieldService),
                ],
            },
        ],
    },
    Area {
        key: "billing", name: "Billing and subscriptions", channel: C::Other, stage: S::Billing, department: "billing", segment: "retail",
        description: "What customers pay the bank: fee invoices, payments, account plans and refunds.",
        groups: &[
            Group { key: "invoices", name: "Invoices", channel: C::Email, stage: S::Billing, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("invoice-email", "Invoice e-mail", S::Billing),
                    via("paper-invoice", "Paper invoice", S::Billing, C::Letter),
                    step("overdue-reminder", "Overdue invoice reminder", S::Billing),
                ],
            },
            Group { key: "payments", name: "Payments to the bank", channel: C::Web, stage: S::Billing, department: Some("payments"), targets: service(90.0, 6.5),
                steps: &[
                    step("card-payment", "Card payment", S::Billing),
                    via("direct-debit-collection", "Direct debit collection", S::Billing, C::Other),
                    via("failed-payment-notice", "Failed payment notice", S::Billing, C::Email),
                ],
            },
            Group { key: "subscriptions", name: "Account plans", channel: C::Web, stage: S::Renewal, department: None, targets: nps(30),
                steps: &[
                    step("plan-sign-up", "Plan sign-up", S::Purchase),
                    step("plan-renewal", "Plan renewal", S::Renewal),
                    step("plan-change", "Plan upgrade or downgrade", S::Renewal),
                    step("plan-cancellation", "Plan cancellation", S::Return),
                ],
            },
            Group { key: "refunds", name: "Refunds", channel: C::Web, stage: S::Billing, department: None, targets: service(85.0, 6.0),
                steps: &[
                    step("refund-request", "Refund request", S::Billing),
                    via("refund-confirmation", "Refund confirmation", S::Billing, C::Email),
                ],
            },
        ],
    },
    Area {
        key: "loyalty", name: "Feedback and loyalty", channel: C::Other, stage: S::Advocacy, department: "customer-experience", segment: "retail",
        description: "Surveys after interactions, rewards and referrals: where loyalty is measured and earned.",
        groups: &[
            Group { key: "surveys", name: "Surveys", channel: C::Email, stage: S::Advocacy, department: None, targets: None,
                steps: &[
                    step("nps-survey", "Relationship NPS survey", S::Advocacy),
                    step("csat-after-interaction", "Satisfaction survey after an interaction", S::Support),
                    via("ces-after-service", "Effort survey after a service request", S::Support, C::MobileApp),
                    step("exit-survey", "Exit survey", S::Return),
                ],
            },
            Group { key: "rewards", name: "Rewards", channel: C::MobileApp, stage: S::Renewal, department: None, targets: nps(50),
                steps: &[
                    via("anniversary-gift", "Anniversary gift", S::Renewal, C::Letter),
                    step("loyalty-rate-boost", "Loyalty rate boost", S::Renewal),
                ],
            },
            Group { key: "referrals", name: "Referrals and reviews", channel: C::Web, stage: S::Advocacy, department: None, targets: nps(70),
                steps: &[
                    step("referral-link", "Referral link", S::Advocacy),
                    via("referral-reward", "Referral reward confirmation", S::Advocacy, C::Email),
                    via("review-invitation", "Invitation to review the bank", S::Advocacy, C::Email),
                ],
            },
            Group { key: "win-back", name: "Win-back", channel: C::Letter, stage: S::Return, department: None, targets: None,
                steps: &[
                    step("closure-confirmation", "Account closure confirmation", S::Return),
                    step("win-back-offer", "Win-back offer", S::Renewal),
                ],
            },
        ],
    },
];

/// One journey of the demo: its key, name, description and stages.
struct JourneyDef {
    key: &'static str,
    name: &'static str,
    description: &'static str,
    stages: &'static [(&'static str, JourneyStage, &'static [&'static str])],
}

#[rustfmt::skip]
static JOURNEYS: &[JourneyDef] = &[
    JourneyDef {
        key: "retail.account-opening",
        name: "Open a current account",
        description: "From the first advert to a customer who pays with the new card and recommends the bank.",
        stages: &[
            ("Hear about us", S::Awareness, &["marketing.search.paid-search-ad", "marketing.social.paid-social-ad"]),
            ("Compare accounts", S::Consideration, &["website.products.current-accounts", "website.products.rate-table"]),
            ("Apply", S::Purchase, &["website.apply.current-account", "branch.advice.account-opening-meeting"]),
            (
                "Get set up",
                S::Onboarding,
                &[
                    "onboarding.kyc.id-document-upload",
                    "onboarding.welcome.welcome-email",
                    "mobile-app.registration.sign-up",
                    "onboarding.switching.switch-confirmation",
                ],
            ),
            ("Receive the card", S::Delivery, &["cards.mailing.card-carrier", "cards.mailing.pin-mailer"]),
            ("Bank every day", S::Usage, &["mobile-app.everyday.instant-payment", "cards.acceptance.contactless-payment"]),
            ("Recommend", S::Advocacy, &["loyalty.surveys.nps-survey", "loyalty.referrals.referral-link"]),
        ],
    },
    JourneyDef {
        key: "mortgage.first-home",
        name: "Buy a first home",
        description: "A first-time buyer from the mortgage calculator to the keys, and the remortgage years later.",
        stages: &[
            ("Find out what I can borrow", S::Consideration, &["website.calculators.mortgage-calculator", "mortgages.advice.fact-find"]),
            ("Get advice", S::Consideration, &["mortgages.advice.affordability-assessment", "mortgages.advice.product-recommendation"]),
            ("Apply", S::Purchase, &["mortgages.application.online-application", "mortgages.application.document-upload", "mortgages.application.offer-letter"]),
            ("Value the property", S::Delivery, &["mortgages.valuation.valuation-booking", "mortgages.valuation.surveyor-visit"]),
            ("Complete", S::Delivery, &["mortgages.completion.funds-release", "mortgages.completion.welcome-letter"]),
            ("Pay the mortgage", S::Billing, &["mortgages.servicing.annual-statement", "mortgages.servicing.rate-change-notice"]),
            ("Renew the deal", S::Renewal, &["mortgages.remortgage.product-expiry-reminder", "mortgages.remortgage.product-transfer-offer"]),
        ],
    },
    JourneyDef {
        key: "cards.dispute",
        name: "Dispute a card payment",
        description: "A customer who does not recognise a card payment, until the money is back and the case is closed.",
        stages: &[
            ("Spot the payment", S::Usage, &["mobile-app.everyday.push-notification", "online-banking.accounts.transaction-history"]),
            ("Report it", S::Support, &["mobile-app.help.dispute-transaction", "cards.disputes.dispute-intake", "mobile-app.cards.card-freeze"]),
            ("While we investigate", S::Support, &["cards.disputes.evidence-upload", "cards.disputes.provisional-credit", "cards.disputes.merchant-response"]),
            ("Outcome", S::Support, &["cards.disputes.dispute-outcome"]),
            ("Tell us how it went", S::Advocacy, &["loyalty.surveys.csat-after-interaction"]),
        ],
    },
    JourneyDef {
        key: "loans.personal-loan",
        name: "Take out a personal loan",
        description: "From a rate quote to the last repayment.",
        stages: &[
            ("Look at loans", S::Consideration, &["website.products.loans", "website.calculators.loan-calculator", "loans.application.eligibility-quote"]),
            ("Apply and sign", S::Purchase, &["loans.application.loan-application", "loans.application.e-signature"]),
            ("Receive the money", S::Delivery, &["loans.application.funds-disbursement"]),
            ("Repay", S::Billing, &["loans.servicing.repayment-schedule", "loans.servicing.repayment-reminder"]),
            ("Top up or settle", S::Renewal, &["mobile-app.offers.loan-top-up", "loans.servicing.settlement-quote"]),
        ],
    },
    JourneyDef {
        key: "collections.financial-difficulty",
        name: "Get help with financial difficulty",
        description: "A customer who misses a payment, is offered help and gets back on track.",
        stages: &[
            ("Missed payment", S::Billing, &["collections.early-arrears.arrears-letter", "collections.early-arrears.arrears-email"]),
            ("Talk to us", S::Support, &["collections.hardship.difficulty-referral", "collections.hardship.income-expenditure", "collections.hardship.debt-advice-referral"]),
            ("Agree a plan", S::Billing, &["collections.early-arrears.arrangement-call", "collections.hardship.forbearance-agreement"]),
            ("Back on track", S::Advocacy, &["complaints.follow-up.satisfaction-callback"]),
        ],
    },
    JourneyDef {
        key: "complaints.resolution",
        name: "Resolve a complaint",
        description: "A complaint from the first contact to the final response and the follow-up call.",
        stages: &[
            ("Complain", S::Support, &["complaints.intake.complaint-call", "complaints.intake.web-form", "complaints.intake.in-branch"]),
            ("Investigation", S::Support, &["complaints.handling.acknowledgement", "complaints.handling.investigation-update"]),
            ("Response", S::Support, &["complaints.handling.final-response", "complaints.handling.redress-payment"]),
            ("Follow-up", S::Advocacy, &["complaints.follow-up.satisfaction-callback", "complaints.follow-up.lessons-survey"]),
        ],
    },
];

/// The demo touchpoints, parents before their children (so they can be created in order, or
/// in one batch naming parents by `parent_key`).
pub fn touchpoints() -> Vec<Touchpoint> {
    let mut out = Vec::with_capacity(360);
    for area in AREAS {
        out.push(Touchpoint {
            key: area.key.to_owned(),
            name: area.name.to_owned(),
            description: area.description.to_owned(),
            channel: area.channel as i32,
            stage: area.stage as i32,
            department: area.department.to_owned(),
            main: true,
            labels: labels(&[("segment", area.segment), ("level", "area")]),
            ..Default::default()
        });
        for group in area.groups {
            let group_key = format!("{}.{}", area.key, group.key);
            let department = group.department.unwrap_or(area.department);
            out.push(Touchpoint {
                key: group_key.clone(),
                name: group.name.to_owned(),
                description: format!("{}: a main touchpoint of {}.", group.name, area.name),
                channel: group.channel as i32,
                stage: group.stage as i32,
                department: department.to_owned(),
                main: true,
                parent_key: area.key.to_owned(),
                intended_experience: group.targets.map(|t| IntendedExperience {
                    target_nps: t.nps,
                    target_csat: t.csat,
                    target_ces: t.ces,
                }),
                labels: labels(&[("segment", area.segment)]),
                ..Default::default()
            });
            for step in group.steps {
                out.push(Touchpoint {
                    key: format!("{group_key}.{}", step.key),
                    name: step.name.to_owned(),
                    description: format!("{}, part of {} ({}).", step.name, group.name, area.name),
                    channel: step.channel.unwrap_or(group.channel) as i32,
                    stage: step.stage as i32,
                    department: department.to_owned(),
                    main: false,
                    parent_key: group_key.clone(),
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// The demo journeys; every stage names touchpoints of [`touchpoints`] by key.
pub fn journeys() -> Vec<Journey> {
    JOURNEYS
        .iter()
        .map(|journey| Journey {
            key: journey.key.to_owned(),
            name: journey.name.to_owned(),
            description: journey.description.to_owned(),
            stages: journey
                .stages
                .iter()
                .map(|(name, stage, keys)| JourneyMapStage {
                    name: (*name).to_owned(),
                    stage: *stage as i32,
                    touchpoint_keys: keys.iter().map(|key| (*key).to_owned()).collect(),
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// Labels from pairs, into whichever map type the generated code uses for `map<string, string>`.
fn labels<M: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> M {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// The key rule of the contract: lowercase dot-separated words of `a-z`, `0-9`, `_`, `-`,
    /// each starting with a letter, at most 128 characters.
    fn valid_key(key: &str) -> bool {
        key.len() <= 128
            && key.split('.').all(|word| {
                word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && word.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })
            })
    }

    #[test]
    fn key_rule_refuses_what_the_contract_refuses() {
        assert!(valid_key("branch.teller.cash-deposit"));
        assert!(!valid_key("Branch.teller"));
        assert!(!valid_key("branch..teller"));
        assert!(!valid_key("branch.3ds"));
        assert!(!valid_key("branch.teller."));
        assert!(!valid_key(&"a".repeat(129)));
    }

    #[test]
    fn count_is_bank_sized() {
        let n = touchpoints().len();
        assert!((300..=400).contains(&n), "{n} touchpoints");
    }

    #[test]
    fn keys_are_unique_and_valid() {
        let mut seen = HashSet::new();
        for tp in touchpoints() {
            assert!(valid_key(&tp.key), "invalid key {}", tp.key);
            assert!(seen.insert(tp.key.clone()), "duplicate key {}", tp.key);
        }
    }

    #[test]
    fn fields_respect_the_contract_limits() {
        for tp in touchpoints() {
            assert!((1..=200).contains(&tp.name.chars().count()), "{}", tp.key);
            assert!(tp.description.chars().count() <= 2000, "{}", tp.key);
            assert!(
                (1..=100).contains(&tp.department.chars().count()),
                "{}",
                tp.key
            );
            assert!(tp.labels.len() <= 32, "{}", tp.key);
            for (key, value) in &tp.labels {
                assert!((1..=63).contains(&key.len()), "{}", tp.key);
                assert!(
                    key.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)),
                    "{}",
                    tp.key
                );
                assert!(value.chars().count() <= 256, "{}", tp.key);
            }
            if let Some(ie) = tp.intended_experience {
                assert!(
                    ie.target_nps.is_none_or(|v| (-100..=100).contains(&v)),
                    "{}",
                    tp.key
                );
                assert!(
                    ie.target_csat.is_none_or(|v| (0.0..=100.0).contains(&v)),
                    "{}",
                    tp.key
                );
                assert!(
                    ie.target_ces.is_none_or(|v| (1.0..=7.0).contains(&v)),
                    "{}",
                    tp.key
                );
            }
        }
    }

    #[test]
    fn parents_come_first_and_mains_are_never_below_subs() {
        let mut main_by_key: HashMap<String, bool> = HashMap::new();
        for tp in touchpoints() {
            if !tp.parent_key.is_empty() {
                let parent_is_main = main_by_key.get(&tp.parent_key).unwrap_or_else(|| {
                    panic!("{} comes before its parent {}", tp.key, tp.parent_key)
                });
                assert!(
                    !tp.main || *parent_is_main,
                    "main {} below a sub-touchpoint",
                    tp.key
                );
            }
            main_by_key.insert(tp.key.clone(), tp.main);
        }
    }

    #[test]
    fn hierarchy_has_mains_and_subs() {
        let all = touchpoints();
        let roots = all.iter().filter(|tp| tp.parent_key.is_empty()).count();
        let mains = all.iter().filter(|tp| tp.main).count();
        assert!(roots >= 10, "{roots} roots");
        assert!(mains > roots && mains < all.len() / 2, "{mains} mains");
        assert!(all.iter().any(|tp| tp.intended_experience.is_some()));
        assert!(
            all.iter()
                .any(|tp| tp.labels.get("segment").is_some_and(|s| s == "retail"))
        );
    }

    #[test]
    fn every_channel_and_stage_is_used() {
        let all = touchpoints();
        let channels: HashSet<i32> = all.iter().map(|tp| tp.channel).collect();
        let stages: HashSet<i32> = all.iter().map(|tp| tp.stage).collect();
        let every_channel: Vec<i32> = (1..)
            .take_while(|&c| Channel::try_from(c).is_ok())
            .collect();
        let every_stage: Vec<i32> = (1..)
            .take_while(|&s| JourneyStage::try_from(s).is_ok())
            .collect();
        assert_eq!(every_channel.len(), 12);
        assert_eq!(every_stage.len(), 11);
        for c in every_channel {
            assert!(
                channels.contains(&c),
                "channel {:?} unused",
                Channel::try_from(c)
            );
        }
        for s in every_stage {
            assert!(
                stages.contains(&s),
                "stage {:?} unused",
                JourneyStage::try_from(s)
            );
        }
        assert!(!channels.contains(&(Channel::Unspecified as i32)));
        assert!(!stages.contains(&(JourneyStage::Unspecified as i32)));
    }

    #[test]
    fn the_default_feed_mapping_lands_on_demo_touchpoints_of_the_right_channel() {
        use cxhub_domain::feed::{ActivityKind, TouchpointMap};
        use cxhub_domain::record::RecordType;

        let by_key: HashMap<String, Touchpoint> = touchpoints()
            .into_iter()
            .map(|tp| (tp.key.clone(), tp))
            .collect();
        let map = TouchpointMap::default();
        assert!(map.iter().count() > 0);
        for (record_type, qualifier, key) in map.iter() {
            let tp = by_key
                .get(key)
                .unwrap_or_else(|| panic!("{record_type}.{qualifier:?} maps to unknown {key}"));
            // A channel-qualified entry lands on a touchpoint of that channel.
            let channel = match (record_type, qualifier) {
                (RecordType::SupportCase | RecordType::Order, Some(q)) => Some(q.to_owned()),
                (RecordType::Activity, Some(q)) => {
                    let kind: ActivityKind = q.parse().expect("activity kind");
                    Some(kind.channel().as_str().to_owned())
                }
                _ => None,
            };
            if let Some(channel) = channel {
                let tp_channel = Channel::try_from(tp.channel).expect("channel");
                assert_eq!(
                    tp_channel.as_str_name(),
                    format!("CHANNEL_{}", channel.to_uppercase()),
                    "{record_type}.{channel} maps to {key}"
                );
            }
        }
    }

    #[test]
    fn journeys_reference_existing_touchpoints() {
        let keys: HashSet<String> = touchpoints().into_iter().map(|tp| tp.key).collect();
        let journeys = journeys();
        assert!((4..=6).contains(&journeys.len()));
        let mut journey_keys = HashSet::new();
        for journey in journeys {
            assert!(
                valid_key(&journey.key),
                "invalid journey key {}",
                journey.key
            );
            assert!(
                journey_keys.insert(journey.key.clone()),
                "duplicate journey {}",
                journey.key
            );
            assert!((1..=50).contains(&journey.stages.len()), "{}", journey.key);
            for stage in &journey.stages {
                assert_ne!(
                    stage.stage,
                    JourneyStage::Unspecified as i32,
                    "{}",
                    journey.key
                );
                assert!(
                    (1..=100).contains(&stage.touchpoint_keys.len()),
                    "{}",
                    journey.key
                );
                let distinct: HashSet<&String> = stage.touchpoint_keys.iter().collect();
                assert_eq!(
                    distinct.len(),
                    stage.touchpoint_keys.len(),
                    "repeat in {}",
                    journey.key
                );
                for key in &stage.touchpoint_keys {
                    assert!(
                        keys.contains(key),
                        "journey {} names unknown {key}",
                        journey.key
                    );
                }
            }
        }
    }
}
