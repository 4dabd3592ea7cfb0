//! List operations' outputs: one page of items, and the token of the next page.

/// A List operation's output, one page of it. A caller follows `next_token` until it is
/// absent, passing it back in the input field [`Page::TOKEN_FIELD`].
pub trait Page {
    type Item;
    /// Where the next call's input takes the token: `nextToken`, but the tag operations'
    /// `NextToken`.
    const TOKEN_FIELD: &'static str = "nextToken";
    /// The token of the next page, taken out of this one; none on the last page.
    fn take_next_token(&mut self) -> Option<String>;
    /// This page's items.
    fn items_mut(&mut self) -> &mut Vec<Self::Item>;
}

/// `impl Page for $output` whose items are `$items` and whose token is `next_token`.
macro_rules! page_of {
    ($output:ty, $items:ident: $item:ty $(, token $field:literal)?) => {
        impl $crate::paging::Page for $output {
            type Item = $item;
            $(const TOKEN_FIELD: &'static str = $field;)?
            fn take_next_token(&mut self) -> Option<String> {
                self.next_token.take()
            }
            fn items_mut(&mut self) -> &mut Vec<$item> {
                &mut self.$items
            }
        }
    };
}

pub(crate) use page_of;
