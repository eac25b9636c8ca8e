//! Batches whose items stand or fall one by one (RecordInteractions, SubmitResponses): every item
//! is validated on its own, the valid ones are written together, and each item ends with either
//! what the write made of it or the field violations that kept it out.

use crate::{Error, FieldViolation, Result};

/// What became of one item of a batch: the write's outcome, or why it was refused.
pub type ItemOutcome<T> = std::result::Result<T, Vec<FieldViolation>>;

/// Validates each of `inputs` with `validate` (given the item's index), writes the valid ones
/// in one call of `write` (not called when none is valid), and answers one outcome per input, in
/// request order. `write` must answer one outcome per item it was given, in its order; anything
/// else is an internal error, as is a failed write (nothing of the batch is then reported as
/// written).
pub async fn validate_then_write<I, V, T, W, Fut>(
    inputs: &[I],
    mut validate: impl FnMut(usize, &I) -> ItemOutcome<V>,
    write: W,
) -> Result<Vec<ItemOutcome<T>>>
where
    W: FnOnce(Vec<V>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ItemOutcome<T>>>>,
{
    let mut outcomes: Vec<Option<ItemOutcome<T>>> = Vec::with_capacity(inputs.len());
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        match validate(index, input) {
            Ok(item) => {
                valid.push(item);
                slots.push(index);
                outcomes.push(None);
            }
            Err(violations) => outcomes.push(Some(Err(violations))),
        }
    }
    if !valid.is_empty() {
        let written = write(valid).await?;
        if written.len() != slots.len() {
            return Err(Error::internal("a batch item got no result"));
        }
        for (index, outcome) in slots.into_iter().zip(written) {
            outcomes[index] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| Error::internal("a batch item got no result")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(field: &str) -> Vec<FieldViolation> {
        vec![FieldViolation {
            field: field.into(),
            description: "bad".into(),
        }]
    }

    fn even_only(index: usize, n: &i32) -> ItemOutcome<i32> {
        if n % 2 == 0 {
            Ok(*n)
        } else {
            Err(violation(&format!("items[{index}]")))
        }
    }

    #[tokio::test]
    async fn valid_items_are_written_together_and_answered_in_request_order() {
        let mut calls = 0;
        let outcomes = validate_then_write(&[2, 3, 4, 5], even_only, |valid: Vec<i32>| {
            calls += 1;
            async move {
                assert_eq!(valid, [2, 4]);
                Ok(valid
                    .into_iter()
                    .map(|n| {
                        if n == 4 {
                            Err(violation("taken"))
                        } else {
                            Ok(n * 10)
                        }
                    })
                    .collect())
            }
        })
        .await
        .expect("written");
        assert_eq!(calls, 1);
        assert_eq!(
            outcomes,
            [
                Ok(20),
                Err(violation("items[1]")),
                Err(violation("taken")),
                Err(violation("items[3]")),
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_written_when_nothing_is_valid() {
        let outcomes = validate_then_write(&[1, 3], even_only, |_: Vec<i32>| async {
            Err::<Vec<ItemOutcome<i32>>, _>(Error::internal("must not be called"))
        })
        .await
        .expect("no write");
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes.iter().all(std::result::Result::is_err));
    }

    #[tokio::test]
    async fn a_write_that_loses_an_item_or_fails_is_an_error() {
        let short =
            validate_then_write(&[2, 4], even_only, |_: Vec<i32>| async { Ok(vec![Ok(1)]) }).await;
        assert!(matches!(short, Err(Error::Internal(_))), "{short:?}");
        let failed = validate_then_write(&[2], even_only, |_: Vec<i32>| async {
            Err::<Vec<ItemOutcome<i32>>, _>(Error::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
    }
}
